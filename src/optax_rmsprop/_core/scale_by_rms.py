"""`scale_by_rms`: divide updates by the root of an EMA of their square."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_rmsprop._core import programs as _programs
from optax_rmsprop._rules import numerics as _numerics
from optax_rmsprop._rules import optax_compat as _optax_compat
from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._rules import validation as _validation

# The state classes are optax's own, so that a state of optax.rmsprop and
# one of ours are the same pytree: checkpoints, pickles and optax's
# tree utilities (tree_get, tree_map_params) work across the two.
ScaleByRmsState = optax.ScaleByRmsState
ScaleByRmsWithCountState = _optax_compat.ScaleByRmsWithCountState
ScaleByRStdDevState = optax.ScaleByRStdDevState
ScaleByRStdDevWithCountState = _optax_compat.ScaleByRStdDevWithCountState

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
  """Our new averages: (ν, μ) in the compute dtype and (ν, μ) as stored.

  optax's ``update_moment_per_elem_norm`` and ``update_moment`` in their
  order of operations, in at least float32, with the overflow guards.
  """
  cdtype = _numerics.compute_dtype(jnp.promote_types(g.dtype, nu.dtype))
  rdtype = _numerics.real_dtype(cdtype)
  g_c = _numerics.cast(g, cdtype)
  g2 = _numerics.abs_sq(g_c)
  decay = _numerics.hyper(decay, rdtype)
  if nu.dtype == rdtype:
    # |g|² overflows for finite |g| > 1.8e19 (float32), making ν inf: that
    # step's update is 0 (as in optax). Clamping the *old* ν at the largest
    # float lets ν recover on the next step (in optax it stays inf, and the
    # element never moves again).
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
  """Our ``g / sqrt(v + eps)`` or ``g / (sqrt(v) + eps)``, in the compute
  dtype, with the variance clamped at 0 and the denominator floored."""
  cdtype = _numerics.compute_dtype(jnp.promote_types(g.dtype, nu_hat.dtype))
  g_c = _numerics.cast(g, cdtype)
  eps = _numerics.hyper(eps, cdtype)
  var = nu_hat
  if mu_hat is not None:
    # |μ̂|² overflowing (|μ̂| > √max) means ν overflowed (|μ̂|² ≤ ν̂,
    # exactly): ν̂ = inf this step, where inf − inf would be NaN, or ν̂
    # clamped since, where ν̂ − inf would clamp the variance to 0, a step of
    # g/√ε. With μ̂ taken as 0 the variance is ν̂: inf (a zero update, as
    # without centering) or huge (a near-zero step).
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


def scale_by_rms(
    decay: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    initial_scale: jax.typing.ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    bias_correction: bool = False,
    *,
    nu_dtype: Optional[Any] = None,
    safe_numerics: bool = False,
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
      v_t &\leftarrow \hat\nu_t - |\hat\mu_t|^2
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
  classes: an optax state can be passed to ``update`` and vice versa.
  ``None`` gradient leaves (frozen parameters) give ``None`` updates and leave
  their state as it is (optax replaces it by ``None``).

  Which program computes a leaf:

  * float32/float64 leaves whose state has their dtype run optax's own
    transformation (it is called on those leaves), so the step lowers to
    optax's program and the numbers are optax's bit for bit, eagerly, under
    :func:`jax.jit` and :func:`jax.lax.scan`, with the gradient computed in
    the same jit, on any backend. Including its non-finite results: a
    :math:`|g|^2` beyond the float range makes :math:`\nu` inf for good,
    and ``eps=0`` with a zero gradient gives NaN.
  * Other leaves, and every leaf with ``safe_numerics=True``, run ours:
    float16/bfloat16 gradients or state are computed in float32 and cast
    back, so ε does not underflow and a zero gradient gives a zero update
    (optax#1784); state stored narrower than it is computed (``nu_dtype``)
    saturates at the dtype's largest finite value instead of overflowing,
    and the update is computed from the state as stored (rounded, as PyTorch
    does with low-precision state); complex gradients use :math:`|g|^2` with
    :math:`\nu` stored real (optax stores a complex :math:`\nu`).
  * ``safe_numerics=True`` adds, on every leaf: after a :math:`|g|^2`
    overflow (:math:`\nu` inf and a zero update that step, as in optax)
    :math:`\nu` restarts from the largest finite float on the next step;
    the centered variance is clamped at 0 (rounding can make
    :math:`\nu - \mu^2` negative); the denominator is floored at the
    smallest normal float, so even ``eps=0`` keeps ``0 / 0`` out. These add
    operations to the step, so they change the last bits of finite results
    too: hence opt-in.

  State keeps its dtype on every update (``nu_dtype``, else the params' real
  dtype), also for array hyperparameters of another dtype (float64 under
  ``jax_enable_x64``, ``optax.inject_hyperparams``); updates keep the
  gradient's dtype. NaN and inf gradients still produce non-finite updates.

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
    safe_numerics: Opt in to the overflow restart, the variance clamp and
      the denominator floor above, on float32/float64 leaves too (their
      results then differ from optax's in the last bits).

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
      match the state, or a gradient is complex where its parameter was real
      (known from ``params`` when given, or from a complex :math:`\mu`).
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
  _validation.check_flag("safe_numerics", safe_numerics)
  # Python numbers (NumPy's would promote float32 state under x64) and bools.
  decay, eps = _validation.host_scalar(decay), _validation.host_scalar(eps)
  initial_scale = _validation.host_scalar(initial_scale)
  eps_in_sqrt, centered = bool(eps_in_sqrt), bool(centered)
  bias_correction, safe_numerics = bool(bias_correction), bool(safe_numerics)

  def init_fn(params):
    params = _trees.as_arrays(params)
    _trees.check_inexact(params, "scale_by_rms", "parameter")
    # *_like (not jnp.full(shape)) so the state inherits the params' sharding.
    nu = _trees.map_leaves(
        lambda p: jnp.full_like(
            p,
            jnp.real(initial_scale)  # inject_hyperparams: complex params
            if jnp.iscomplexobj(initial_scale)
            else initial_scale,
            _numerics.storage_dtype(p, nu_dtype, real=True),
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

  optax_factory = (
      _programs.SCALE_BY_STDDEV if centered else _programs.SCALE_BY_RMS
  )

  def optax_update(dtype, updates, state):
    """optax's own update on its leaves, array hyperparameters in ``dtype``
    (a no-op for Python numbers, which stay weakly typed)."""
    return optax_factory(
        decay=_numerics.hyper(decay, dtype),
        eps=_numerics.hyper(eps, dtype),
        initial_scale=initial_scale,
        eps_in_sqrt=eps_in_sqrt,
        bias_correction=bias_correction,
    ).update(updates, state)

  def own_update(updates, state):
    """Ours: low-precision leaves computed in float32, and safe numerics."""
    old_mu = state.mu if centered else jax.tree.map(lambda _: None, state.nu)
    moments = jax.tree.map(
        lambda g, n, m: None if g is None else _update_moments(g, n, m, decay),
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
    count = None
    if bias_correction:
      count = optax.safe_increment(state.count)
      # optax's own function, so 1 - decay**count rounds as in optax.
      nu_hat = optax.tree.bias_correction(nu_hat, decay, count)
      if centered:
        mu_hat = optax.tree.bias_correction(mu_hat, decay, count)
    new_updates = jax.tree.map(
        lambda g, n, m: None
        if g is None
        else _scale(g, n, m, eps, eps_in_sqrt),
        updates,
        nu_hat,
        mu_hat if centered else jax.tree.map(lambda _: None, nu_hat),
        is_leaf=_trees.is_none,
    )
    return new_updates, _make_state(
        field(2), field(3), count, centered, bias_correction
    )

  def program(g, nu, mu=None):
    if safe_numerics or jnp.iscomplexobj(g):
      return None
    return _programs.optax_dtype(g, nu, mu)

  def update_fn(updates, state, params=None):
    updates = _trees.as_arrays(updates)
    _trees.check_matches(updates, state.nu, "scale_by_rms")
    _trees.check_inexact(updates, "scale_by_rms", "gradient")
    if params is not None:
      _trees.check_complex(updates, _trees.as_arrays(params), "scale_by_rms")
    if centered:
      _trees.check_complex(updates, state.mu, "scale_by_rms")
    parts = _programs.Partition(
        updates, (state.nu, state.mu if centered else None), program
    )
    if not parts.groups:  # no gradient at all: count only, as in optax
      parts.groups[None if safe_numerics else jnp.dtype(jnp.float32)] = []
    results = {}
    for key in parts.groups:
      sub = parts.subtree(key, updates)
      if key is None:
        results[key] = own_update(sub, state)
      else:
        results[key] = optax_update(key, sub, state)
    # A None gradient leaves its state as it was (optax sets it to None).
    new_updates = parts.merge(updates, {k: u for k, (u, _) in results.items()})
    new_nu = parts.merge(state.nu, {k: s.nu for k, (_, s) in results.items()})
    new_mu = None
    if centered:
      new_mu = parts.merge(state.mu, {k: s.mu for k, (_, s) in results.items()})
    count = next(iter(results.values()))[1].count if bias_correction else None
    return new_updates, _make_state(
        new_nu, new_mu, count, centered, bias_correction
    )

  return optax.GradientTransformation(init_fn, update_fn)
