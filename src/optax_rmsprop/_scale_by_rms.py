"""`scale_by_rms`: divide updates by the root of an EMA of their square."""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax._src import transform as _optax_transform

from optax_rmsprop import _numerics
from optax_rmsprop import _trees
from optax_rmsprop import _validation

# The state classes are optax's own, so that a state of optax.rmsprop and
# one of ours are the same pytree: checkpoints, pickles and optax's
# tree utilities (tree_get, tree_map_params) work across the two.
ScaleByRmsState = optax.ScaleByRmsState
ScaleByRmsWithCountState = _optax_transform.ScaleByRmsWithCountState
ScaleByRStdDevState = optax.ScaleByRStdDevState
ScaleByRStdDevWithCountState = _optax_transform.ScaleByRStdDevWithCountState

RMS_STATE_TYPES = (
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
)


def _make_state(nu, mu, count, centered: bool, bias_correction: bool):
  """optax's state class for the configuration (fields only where used)."""
  if centered:
    if bias_correction:
      return ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)
    return ScaleByRStdDevState(mu=mu, nu=nu)
  if bias_correction:
    return ScaleByRmsWithCountState(count=count, nu=nu)
  return ScaleByRmsState(nu=nu)


def _finite(x: jax.Array, storage_dtype=None) -> jax.Array:
  """Clamps a non-negative array at the largest value finite in its dtype
  (and in ``storage_dtype``, so that a later cast to it needs no clip).

  A select, not ``jnp.minimum``, whose NaN propagation XLA:CPU does not
  vectorise; ``NaN > big`` is false, so NaN still passes through.
  """
  big = jnp.finfo(x.dtype).max
  if storage_dtype is not None:
    big = min(big, jnp.finfo(storage_dtype).max)
  return _numerics.clamp_above(x, float(big))


def _as_stored(
    x: jax.Array, dtype, in_range: bool = False
) -> tuple[jax.Array, jax.Array]:
  """``x`` rounded to its storage ``dtype``: (in x's dtype, in ``dtype``).

  The update is computed from the state as stored (as PyTorch does with
  low-precision state), so it is a function of what a checkpoint holds, and
  XLA can read the new state from the fusion that wrote it; from the
  unrounded value, XLA recomputes the new state from the old one, which an
  in-place (donated or loop-carried) buffer must first copy.
  A no-op when ``dtype`` is ``x``'s. ``in_range``: x is known finite in
  ``dtype`` (no saturation selects needed).
  """
  cast = _numerics.cast if in_range else _numerics.saturating_cast
  stored = cast(x, dtype)
  return _numerics.cast(stored, x.dtype), stored


def _sqrt_max(dtype) -> float:
  """√ of the largest finite value of a real ``dtype``: |x|² beyond it
  overflows."""
  return float(np.sqrt(jnp.finfo(dtype).max))


def _clamp_magnitude(x: jax.Array, bound: float) -> jax.Array:
  """``x`` with its magnitude clamped at ``bound`` (selects: a no-op, bit for
  bit, where |x| <= bound; NaN passes)."""
  if jnp.iscomplexobj(x):
    size = jnp.abs(x)
    return jnp.where(size > bound, x * (bound / size), x)
  return jnp.where(x > bound, bound, jnp.where(x < -bound, -bound, x))


def _update_moments(g, nu, mu, decay):
  """The new averages: (ν, μ) in the compute dtype and (ν, μ) as stored.

  The same operations, in the same order, as optax's
  ``update_moment_per_elem_norm`` and ``update_moment``, so that float32
  and float64 results are optax's bit for bit, eagerly and under jit.
  """
  cdtype = _numerics.compute_dtype(jnp.promote_types(g.dtype, nu.dtype))
  rdtype = _numerics.real_dtype(cdtype)
  g_c = _numerics.cast(g, cdtype)
  g2 = _numerics.abs_sq(g_c)
  if nu.dtype == rdtype:
    # |g|² overflows for finite |g| > 1.8e19 (float32), making ν inf: that
    # step's update is 0 (as in optax). Clamping the *old* ν at the largest
    # float lets ν recover on the next step (in optax it stays inf, and the
    # element never moves again). Clamping the new ν instead would put a
    # select after the EMA, which changes how newer XLA:CPU contracts the
    # EMA into an FMA (a last-bit difference from optax).
    nu_old = _numerics.clamp_above(nu, float(jnp.finfo(rdtype).max))
    nu_c = stored_nu = (1 - decay) * g2 + decay * nu_old
  else:
    # Narrower storage (e.g. bfloat16): one select clamps ν into its range,
    # so the cast saturates instead of overflowing.
    new_nu = (1 - decay) * g2 + decay * _numerics.cast(nu, rdtype)
    nu_c, stored_nu = _as_stored(
        _finite(new_nu, nu.dtype), nu.dtype, in_range=True
    )
  if mu is None:
    return nu_c, None, stored_nu, None
  # After ν overflowed and restarted from the largest float, |μ|² could
  # exceed ν, and ν − |μ|² (clamped at 0) would give steps of g/√ε until μ
  # decays. Clamping the old |μ| at √max keeps |μ|² below ν, as exactly.
  mu_old = _clamp_magnitude(_numerics.cast(mu, cdtype), _sqrt_max(rdtype))
  new_mu = (1 - decay) * g_c + decay * mu_old
  mu_c, stored_mu = _as_stored(new_mu, mu.dtype)
  return nu_c, mu_c, stored_nu, stored_mu


def _scale(g, nu_hat, mu_hat, eps, eps_in_sqrt: bool):
  """``g / sqrt(v + eps)`` or ``g / (sqrt(v) + eps)``, in the compute dtype."""
  cdtype = _numerics.compute_dtype(jnp.promote_types(g.dtype, nu_hat.dtype))
  g_c = _numerics.cast(g, cdtype)
  var = nu_hat
  if mu_hat is not None:
    # |μ̂|² overflowing (|μ̂| > √max) means ν overflowed (|μ̂|² ≤ ν̂,
    # exactly): ν̂ = inf this step, where inf − inf would be NaN, or ν̂
    # clamped since, where ν̂ − inf would clamp the variance to 0, a step of
    # g/√ε. With μ̂ taken as 0 the variance is ν̂: inf (a zero update, as
    # without centering) or huge (a near-zero step). (Tested on μ̂, not ν̂:
    # a second use of ν̂ would stop XLA contracting ν̂ − μ̂² into an FMA as
    # it does in optax's graph.)
    sqrt_max = _sqrt_max(_numerics.real_dtype(cdtype))
    mu_hat = jnp.where(jnp.abs(mu_hat) > sqrt_max, 0, mu_hat)
    var = jnp.maximum(nu_hat - _numerics.abs_sq(mu_hat), 0)  # -inf -> 0
  denominator = (var if eps_in_sqrt else jnp.sqrt(var)) + eps
  tiny = _numerics.smallest_normal(cdtype)
  # A concrete ε >= the smallest normal keeps the denominator off 0 by
  # itself (var >= 0); only a traced, zero or subnormal ε needs the floor.
  if not _validation.known_at_least(eps, tiny):
    denominator = jnp.maximum(denominator, tiny)
  if eps_in_sqrt:
    scaling = jax.lax.rsqrt(denominator)
  else:
    scaling = 1 / denominator
  return _numerics.saturating_cast(scaling * g_c, g.dtype)


def _traced_once(fn, updates, **hyperparams):
  """``fn`` (taking ``hyperparams`` by keyword), traced once per leaf shape.

  Under ``jax.jit``, a jitted ``inline=True`` function is traced once per
  distinct leaf shape and dtype and inlined into the caller's graph (the
  same HLO), which on a tree of thousands of leaves halves the tracing
  time. Only there: eagerly, a jitted function would fuse what optax runs
  (and rounds) op by op. Python-number hyperparameters are static
  arguments, so a rebuilt transform reuses the cache.
  """
  leaves = jax.tree.leaves(updates)
  if not leaves or type(leaves[0]).__name__ != "DynamicJaxprTracer":
    return lambda *args: fn(*args, **hyperparams)
  static = tuple(
      sorted(k for k, v in hyperparams.items() if isinstance(v, (int, float)))
  )
  jitted = _jit_inline(fn, static)
  return lambda *args: jitted(*args, **hyperparams)


@functools.lru_cache(maxsize=None)
def _jit_inline(fn, static_argnames: tuple[str, ...]):
  return jax.jit(fn, static_argnames=static_argnames, inline=True)


def scale_by_rms(
    decay: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    initial_scale: jax.typing.ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    bias_correction: bool = False,
    *,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
  r"""Rescales updates by the root of an EMA of their squares (RMSprop scaling).

  For a gradient :math:`g_t` (step :math:`t = 1, 2, \dots`), with
  :math:`\rho` = ``decay``, :math:`\epsilon` = ``eps`` and
  :math:`\nu_0` = ``initial_scale``, :math:`\mu_0 = 0`:

  .. math::

    \begin{align*}
      \nu_t &\leftarrow \rho\, \nu_{t-1} + (1 - \rho)\, |g_t|^2 \\
      \mu_t &\leftarrow \rho\, \mu_{t-1} + (1 - \rho)\, g_t
        && \text{if centered} \\
      \hat\nu_t &\leftarrow \nu_t / (1 - \rho^t), \quad
      \hat\mu_t \leftarrow \mu_t / (1 - \rho^t)
        && \text{if bias\_correction, else } \hat\nu_t = \nu_t,
           \hat\mu_t = \mu_t \\
      v_t &\leftarrow \max(\hat\nu_t - |\hat\mu_t|^2,\ 0)
        && \text{if centered, else } v_t = \hat\nu_t \\
      u_t &\leftarrow \begin{cases}
        g_t / \sqrt{v_t + \epsilon} & \text{if eps\_in\_sqrt} \\
        g_t / (\sqrt{v_t} + \epsilon) & \text{otherwise.}
      \end{cases}
    \end{align*}

  The state holds :math:`\nu`, and :math:`\mu` only when ``centered``, and an
  int32 step count only when ``bias_correction``: no arrays for disabled
  features. It is :func:`optax.scale_by_rms` (``centered=False``) or
  :func:`optax.scale_by_stddev` (``centered=True``), with the same state
  classes and, for float32 and float64, the same numbers bit for bit, eagerly
  and under :func:`jax.jit`; an optax state can be passed to ``update`` and
  vice versa. ``None`` gradient leaves (frozen parameters) give ``None``
  updates and leave their state as it is.

  Numerics, beyond optax:

  * float16/bfloat16 gradients or state are computed in float32 and cast back,
    so ε does not underflow and a zero gradient gives a zero update
    (optax#1784). The denominator is floored at the smallest normal float, so
    even ``eps=0`` keeps ``0 / 0`` out.
  * The centered variance is clamped at 0: rounding can make
    :math:`\nu - \mu^2` negative for constant gradients.
  * State keeps its dtype (``nu_dtype``, else the params' real dtype) on every
    update; state stored narrower than it is computed (e.g. a bfloat16
    :math:`\nu`) saturates at the dtype's largest finite value instead of
    overflowing to inf. A :math:`|g|^2` beyond the float range makes
    :math:`\nu` inf and the update 0 for that step, as in optax, but the next
    step restarts :math:`\nu` from the largest finite float (in optax it stays
    inf and the element never moves again). The update is computed from
    :math:`\nu_t, \mu_t` as stored (rounded to ``nu_dtype``), as PyTorch does
    with low-precision state. Updates keep the gradient's dtype. NaN and inf
    gradients still produce non-finite updates.
  * Complex gradients use :math:`|g|^2`; :math:`\nu` is stored real (optax
    stores a complex :math:`\nu` with a zero imaginary part).

  Args:
    decay: :math:`\rho`, decay of the moving averages, in [0, 1].
    eps: :math:`\epsilon` >= 0, added to the denominator.
    initial_scale: :math:`\nu_0` >= 0. PyTorch and Keras use 0, TF1 uses 1.
    eps_in_sqrt: Whether :math:`\epsilon` is added inside the square root
      (optax, Keras, TF1) or outside it (PyTorch).
    centered: Whether to divide by the root of the variance estimate
      :math:`\nu - \mu^2` rather than of the second moment (Graves, 2013).
    bias_correction: Whether to divide the averages by :math:`1 - \rho^t`.
    nu_dtype: Storage dtype of :math:`\nu` and :math:`\mu` (e.g.
      ``jnp.bfloat16`` halves their memory and the bytes a step moves); None
      keeps the params' dtype. Arithmetic is always at least float32.

  Returns:
    An :class:`optax.GradientTransformation` whose state is optax's
    :class:`optax.ScaleByRmsState` (``nu``), or with ``centered``
    :class:`optax.ScaleByRStdDevState` (``mu``, ``nu``), or their
    ``...WithCountState`` variants (a ``count`` first) with
    ``bias_correction``.

  Raises:
    ValueError: if a concrete hyperparameter is out of range, infinite or
      not a scalar; at ``init`` if a parameter is an integer or boolean
      array (naming its path); at ``update`` if the gradient tree does not
      match the state, or a gradient is complex where its parameter was real.
    TypeError: naming the argument, if a hyperparameter is not a number, a
      switch not a bool or ``nu_dtype`` not a dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.scale_by_rms(decay=0.9, eps=0.0)
    >>> state = tx.init(jnp.zeros(2))
    >>> updates, state = tx.update(jnp.array([3.0, -0.5]), state)
    >>> updates  # g / sqrt(0.1 g^2) = sign(g) * sqrt(10)
    Array([ 3.1622777, -3.1622777], dtype=float32)
    >>> state.nu  # 0.1 g^2
    Array([0.90000004, 0.025     ], dtype=float32)

  References:
    Hinton, `Lecture 6e: rmsprop
    <https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf>`_,
    2012.

    Graves, `Generating Sequences With Recurrent Neural Networks
    <https://arxiv.org/abs/1308.0850>`_, 2013 (centered variant).

    `optax#1784 <https://github.com/google-deepmind/optax/issues/1784>`_
    (float16 zero-gradient NaN).
  """
  _validation.check_interval("decay", decay, 0.0, 1.0)
  _validation.check_nonnegative("eps", eps)
  _validation.check_nonnegative("initial_scale", initial_scale)
  _validation.check_flag("eps_in_sqrt", eps_in_sqrt)
  _validation.check_flag("centered", centered)
  _validation.check_flag("bias_correction", bias_correction)
  _validation.check_dtype("nu_dtype", nu_dtype)
  # Python bools (not NumPy's), which _traced_once keeps static.
  eps_in_sqrt, centered = bool(eps_in_sqrt), bool(centered)
  bias_correction = bool(bias_correction)

  def init_fn(params):
    params = _trees.as_arrays(params)
    _trees.check_inexact(params, "scale_by_rms", "parameter")
    # *_like (not jnp.full(shape)) so the state inherits the params' sharding.
    nu = _trees.map_leaves(
        lambda p: jnp.full_like(
            p, initial_scale, _numerics.storage_dtype(p, nu_dtype, real=True)
        ),
        params,
    )
    mu = None
    if centered:
      mu = _trees.map_leaves(
          lambda p: jnp.zeros_like(p, _numerics.storage_dtype(p, nu_dtype)),
          params,
      )
    count = jnp.zeros([], jnp.int32) if bias_correction else None
    return _make_state(nu, mu, count, centered, bias_correction)

  def update_fn(updates, state, params=None):
    del params
    updates = _trees.as_arrays(updates)
    _trees.check_matches(updates, state.nu, "scale_by_rms")
    _trees.check_inexact(updates, "scale_by_rms", "gradient")
    if centered:
      _trees.check_complex(updates, state.mu, "scale_by_rms")
    old_mu = state.mu if centered else jax.tree.map(lambda _: None, state.nu)
    moments_fn = _traced_once(_update_moments, updates, decay=decay)
    scale_fn = _traced_once(_scale, updates, eps=eps, eps_in_sqrt=eps_in_sqrt)
    moments = jax.tree.map(
        lambda g, n, m: None if g is None else moments_fn(g, n, m),
        updates,
        state.nu,
        old_mu,
        is_leaf=_trees.is_none,
    )
    treedef = jax.tree.structure(updates, is_leaf=_trees.is_none)
    moments = treedef.flatten_up_to(moments)
    field = lambda i: treedef.unflatten(
        [None if m is None else m[i] for m in moments]
    )
    nu_hat, mu_hat = field(0), field(1)
    if bias_correction:
      count = optax.safe_increment(state.count)
      # optax's own function, so 1 - decay**count rounds as in optax. (No
      # clamp after it: a select between the division (which XLA makes a
      # multiply) and + ε would stop the FMA contraction optax's graph gets.)
      nu_hat = optax.tree.bias_correction(nu_hat, decay, count)
      if centered:
        mu_hat = optax.tree.bias_correction(mu_hat, decay, count)
    else:
      count = None
    new_updates = jax.tree.map(
        lambda g, n, m: None if g is None else scale_fn(g, n, m),
        updates,
        nu_hat,
        mu_hat if centered else jax.tree.map(lambda _: None, nu_hat),
        is_leaf=_trees.is_none,
    )
    # A None gradient leaves its state as it was.
    keep = lambda new, old: old if new is None else new
    new_nu = jax.tree.map(keep, field(2), state.nu, is_leaf=_trees.is_none)
    new_mu = None
    if centered:
      new_mu = jax.tree.map(keep, field(3), state.mu, is_leaf=_trees.is_none)
    return new_updates, _make_state(
        new_nu, new_mu, count, centered, bias_correction
    )

  return optax.GradientTransformation(init_fn, update_fn)
