"""`scale_by_rms`: divide updates by the root of an EMA of their square."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_rmsprop import _numerics
from optax_rmsprop import _validation


class ScaleByRmsState(NamedTuple):
  """State of :func:`scale_by_rms`; fields of disabled features are None."""

  nu: optax.Updates  # like params; dtype nu_dtype or params' real dtype.
  mu: Optional[optax.Updates] = None  # like params; centered only.
  count: Optional[jax.Array] = None  # shape=(), int32; bias_correction only.


def check_tree_matches(updates: Any, state_tree: Any, what: str) -> None:
  """Raises a ValueError if ``updates`` does not have the state's structure.

  Runs at trace time (structures and shapes are static), so it costs nothing
  per step, and it replaces jax's generic tree-mismatch message (or silent
  broadcasting of mismatched shapes) by one that says what went wrong.
  """
  got, want = jax.tree.structure(updates), jax.tree.structure(state_tree)
  if got != want:
    raise ValueError(
        f"{what}: the gradient tree does not match the optimizer state, which"
        f" was built by tx.init for another parameter tree.\n gradients:"
        f" {got}\n state:     {want}"
    )
  for path_g, leaf_s in zip(
      jax.tree_util.tree_leaves_with_path(updates), jax.tree.leaves(state_tree)
  ):
    path, leaf_g = path_g
    if jnp.shape(leaf_g) != jnp.shape(leaf_s):
      raise ValueError(
          f"{what}: gradient at {jax.tree_util.keystr(path)} has shape"
          f" {jnp.shape(leaf_g)} but its optimizer state has shape"
          f" {jnp.shape(leaf_s)}."
      )


def _finite(x: jax.Array, storage_dtype=None) -> jax.Array:
  """Clamps a non-negative array at the largest value finite in its dtype
  (and in ``storage_dtype``, so that a later cast to it needs no clip).

  A select, not ``jnp.minimum``: XLA:CPU lowers the NaN-propagating minimum
  to a sequence that made the fused step 1.75x slower than optax (see
  benchmarks/NOTES.md); ``NaN > big`` is false, so NaN still passes through.
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
  XLA can read the new state from the fusion that wrote it. Using the
  unrounded value instead made XLA recompute it from the old state, which an
  in-place (donated or loop-carried) state buffer must first copy: bfloat16 ν
  was 1.02x the float32-ν step time instead of 0.79x (16M params, CPU;
  benchmarks/NOTES.md §5b).
  A no-op when ``dtype`` is ``x``'s. ``in_range``: x is known finite in
  ``dtype`` (no saturation selects needed).
  """
  cast = _numerics.cast if in_range else _numerics.saturating_cast
  stored = cast(x, dtype)
  return _numerics.cast(stored, x.dtype), stored


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
  features. With ``centered=False`` and ``bias_correction=False`` this is
  :func:`optax.scale_by_rms`, number for number; with ``centered=True`` it is
  :func:`optax.scale_by_stddev`.

  Numerics, beyond optax:

  * float16/bfloat16 gradients or state are computed in float32 and cast back,
    so ε does not underflow and a zero gradient gives a zero update
    (optax#1784). The denominator is floored at the smallest normal float, so
    even ``eps=0`` keeps ``0 / 0`` out.
  * The centered variance is clamped at 0: rounding can make
    :math:`\nu - \mu^2` negative for constant gradients.
  * State keeps its dtype (``nu_dtype``, else the params' real dtype) on every
    update; values beyond a storage dtype's range saturate at its largest
    finite value instead of overflowing to inf. The update is computed from
    :math:`\nu_t, \mu_t` as stored (rounded to ``nu_dtype``), as PyTorch does
    with low-precision state. Updates keep the gradient's dtype. NaN and inf
    gradients still produce non-finite updates.
  * Complex gradients use :math:`|g|^2`; :math:`\nu` is stored real.

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
    An :class:`optax.GradientTransformation` with state
    :class:`ScaleByRmsState`.

  Raises:
    ValueError: if a concrete hyperparameter is out of range, or later if the
      gradient tree does not match the state.

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

  def init_fn(params):
    # *_like (not jnp.full(shape)) so the state inherits the params' sharding.
    nu = jax.tree.map(
        lambda p: jnp.full_like(
            p, initial_scale, _numerics.storage_dtype(p, nu_dtype, real=True)
        ),
        params,
    )
    mu = None
    if centered:
      mu = jax.tree.map(
          lambda p: jnp.zeros_like(p, _numerics.storage_dtype(p, nu_dtype)),
          params,
      )
    count = jnp.zeros([], jnp.int32) if bias_correction else None
    return ScaleByRmsState(nu=nu, mu=mu, count=count)

  def leaf(g, nu, mu, correction):
    cdtype = _numerics.compute_dtype(jnp.promote_types(g.dtype, nu.dtype))
    g_c = _numerics.cast(g, cdtype)
    new_nu = (1 - decay) * _numerics.abs_sq(g_c) + decay * _numerics.cast(
        nu, _numerics.real_dtype(cdtype)
    )
    # |g|² can overflow for finite g; a finite ν keeps ν − |μ|² off inf − inf.
    # One select clamps ν into float32's and the storage dtype's range.
    new_nu, stored_nu = _as_stored(
        _finite(new_nu, nu.dtype), nu.dtype, in_range=True
    )
    nu_hat = new_nu
    if correction is not None:
      nu_hat = _finite(new_nu / jnp.asarray(correction).astype(new_nu.dtype))
    var = nu_hat
    stored_mu = None
    if mu is not None:
      new_mu = (1 - decay) * g_c + decay * _numerics.cast(mu, cdtype)
      new_mu, stored_mu = _as_stored(new_mu, mu.dtype)
      mu_hat = new_mu
      if correction is not None:
        mu_hat = new_mu / jnp.asarray(correction).astype(new_mu.dtype)
      var = jnp.maximum(nu_hat - _numerics.abs_sq(mu_hat), 0)  # -inf -> 0
    denominator = (var if eps_in_sqrt else jnp.sqrt(var)) + eps
    tiny = _numerics.smallest_normal(cdtype)
    # A concrete ε >= the smallest normal keeps the denominator off 0 by
    # itself (var >= 0); only a traced, zero or subnormal ε needs the floor
    # (one op fewer per leaf: compile time on many-leaf trees).
    if not _validation.known_at_least(eps, tiny):
      denominator = jnp.maximum(denominator, tiny)
    if eps_in_sqrt:
      scaling = jax.lax.rsqrt(denominator)
    else:
      scaling = 1 / denominator
    update = _numerics.saturating_cast(scaling * g_c, g.dtype)
    return update, stored_nu, stored_mu

  if all(isinstance(h, (int, float, np.number)) for h in (decay, eps)):
    # jit(inline=True): traced once per leaf shape and dtype, then inlined
    # into the caller's graph (same HLO). Tracing each leaf anew made a
    # many-leaf tree trace ~2x slower than optax's; eagerly, it runs as one
    # kernel. Not when the hyperparameters are arrays: inject_hyperparams
    # rebuilds the transform every step, and a new jitted closure would be
    # recompiled every eager step (5 -> 60 ms measured on 10 leaves).
    leaf = jax.jit(leaf, inline=True)

  def update_fn(updates, state, params=None):
    del params
    check_tree_matches(updates, state.nu, "scale_by_rms")
    if bias_correction:
      count = optax.safe_increment(state.count)
      # Computed once, before any cast: rho**t in bfloat16 rounds to 1.
      correction = 1 - decay**count
    else:
      count = correction = None
    if centered:
      out = jax.tree.map(
          lambda g, n, m: leaf(g, n, m, correction), updates, state.nu, state.mu
      )
    else:
      out = jax.tree.map(
          lambda g, n: leaf(g, n, None, correction), updates, state.nu
      )
    treedef = jax.tree.structure(updates)
    leaves = treedef.flatten_up_to(out)
    new_updates = treedef.unflatten([u for u, _, _ in leaves])
    new_nu = treedef.unflatten([n for _, n, _ in leaves])
    new_mu = treedef.unflatten([m for _, _, m in leaves]) if centered else None
    return new_updates, ScaleByRmsState(nu=new_nu, mu=new_mu, count=count)

  return optax.GradientTransformation(init_fn, update_fn)

