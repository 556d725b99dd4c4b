"""Keras 3 base-optimizer steps that optax has no piece for.

Keras' ``clipnorm`` clips each variable's gradient to an L2 norm (optax's
clips are global or elementwise), Keras divides gradients by the loss scale
and the accumulation count (``optax.scale`` multiplies by the inverse, which
rounds differently), accumulates gradients in each variable's dtype
(``optax.MultiSteps`` in float32), and ``use_ema`` keeps a moving average of
the *parameters* (``optax.ema`` averages the updates) that it can write back
into the model. Each follows Keras 3.15's ``optimizers/base_optimizer.py``
and ``backend/jax/optimizer.py`` op for op, so that the float32 numbers are
Keras'.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from optax_rmsprop._rules import trees as _trees


def _like(x: jax.Array, g: jax.Array) -> jax.Array:
  """``x`` in ``g``'s dtype: a float32 hyperparameter (inject_hyperparams'
  default for a mixed tree) must not promote a bfloat16 update. (A Python
  number ``g`` has no dtype to keep.)"""
  dtype = getattr(g, "dtype", None)
  if dtype is None or getattr(x, "dtype", None) == dtype:
    return x
  return jnp.asarray(x).astype(dtype)


def divide_by(divisor: jax.typing.ArrayLike) -> optax.GradientTransformation:
  """``g / divisor`` per leaf: Keras' loss-scale and accumulation division."""
  return optax.stateless(
      lambda updates, params: jax.tree.map(
          lambda g: _like(g / divisor, g), updates
      )
  )


def clip_by_value(max_delta: jax.typing.ArrayLike):
  """Keras' ``clipvalue``: ``optax.clip`` in each gradient's dtype; a complex
  gradient's real and imaginary parts are clipped each (Keras has no
  complex variables; ``jnp.clip`` refuses complex values)."""

  def clip(g):
    if jnp.iscomplexobj(g):
      return _like(jax.lax.complex(clip(g.real), clip(g.imag)), g)
    # Real: inject_hyperparams makes the threshold complex for complex params.
    delta = jnp.real(jnp.asarray(max_delta))
    return _like(jnp.clip(g, -delta, delta), g)

  return optax.stateless(lambda updates, params: jax.tree.map(clip, updates))


def clip_by_global_norm(max_norm: jax.typing.ArrayLike):
  """Keras' ``global_clipnorm``: ``optax.clip_by_global_norm``, op for op,
  with each clipped leaf kept in its dtype (optax's ``lax.select`` raises
  for a float32 ``max_norm`` and bfloat16 gradients)."""

  def update_fn(updates, state, params=None):
    del params
    g_norm = optax.tree.norm(updates)
    trigger = jnp.squeeze(g_norm < max_norm)

    def clip(t):
      return jax.lax.select(
          trigger, t, _like((t / g_norm.astype(t.dtype)) * max_norm, t)
      )

    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def clip_by_leaf_norm(max_norm: jax.typing.ArrayLike):
  r"""Keras' ``clipnorm``: each leaf's gradient clipped to L2 norm ``c``.

  .. math:: g \leftarrow g\, c / \max(\lVert g \rVert_2,\ c)

  computed as Keras' ``_clip_by_norm`` does (``g·c`` first, a zero norm
  kept off the square root), so a leaf under the threshold is multiplied by
  ``c/c`` with Keras' rounding.
  """

  def clip(g):
    l2sum = jnp.sum(jnp.square(g), keepdims=True)
    positive = l2sum > 0
    l2norm = jnp.where(
        positive,
        jnp.sqrt(jnp.where(positive, l2sum, jnp.ones_like(l2sum))),
        l2sum,
    )
    return _like((g * max_norm) / jnp.maximum(l2norm, max_norm), g)

  return optax.stateless(lambda updates, params: jax.tree.map(clip, updates))


def accumulate_gradients(
    inner: optax.GradientTransformation, steps: int
) -> optax.GradientTransformationExtraArgs:
  r"""Keras' ``gradient_accumulation_steps``: ``inner`` on every k-th sum.

  With :math:`a` the sum of the gradients since the last update (0 at first)
  and :math:`k` = ``steps``, a call with gradient :math:`g` does:

  .. math::

    \begin{align*}
      u, a &\leftarrow \operatorname{inner}(g + a), 0
        && \text{on every } k\text{-th call} \\
      u, a &\leftarrow 0, g + a && \text{otherwise}
    \end{align*}

  (``inner`` divides by :math:`k`). As ``optax.MultiSteps(inner, steps,
  use_grad_mean=False)``, with the same ``optax.MultiStepsState``, except
  that :math:`a` has each parameter's dtype, as Keras' accumulators
  (``add_variable_from_reference``). MultiSteps keeps it in float32 (its
  ``accumulator_dtype`` default), rounding every partial sum of float64
  gradients to float32, and its ``accumulator_dtype=None`` fails under
  ``jit`` for parameters not in JAX's default float dtype. ``inner`` runs on
  every call and its result is kept only on updating ones, as in Keras' JAX
  backend (so the updates of the other calls are exactly 0, whatever the
  gradient).
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return optax.MultiStepsState(
        mini_step=jnp.zeros([], jnp.int32),
        gradient_step=jnp.zeros([], jnp.int32),
        inner_opt_state=inner.init(params),
        acc_grads=jax.tree.map(jnp.zeros_like, _trees.as_arrays(params)),
        skip_state=(),
    )

  def update_fn(updates, state, params=None, **extra_args):
    # Keras: `g + acc_g`, in their promoted dtype, then stored in acc_g's.
    # A None gradient (frozen param) stays None, its sum untouched.
    summed = jax.tree.map(
        lambda g, a: None if g is None else g + a,
        updates,
        state.acc_grads,
        is_leaf=_trees.is_none,
    )
    emit = state.mini_step == steps - 1
    new_updates, new_inner = inner.update(
        summed, state.inner_opt_state, params, **extra_args
    )
    keep = lambda new, old: jnp.where(emit, new, old).astype(old.dtype)
    new_state = optax.MultiStepsState(
        mini_step=(state.mini_step + 1) % steps,
        gradient_step=jnp.where(
            emit, optax.safe_increment(state.gradient_step), state.gradient_step
        ),
        inner_opt_state=jax.tree.map(keep, new_inner, state.inner_opt_state),
        acc_grads=jax.tree.map(
            lambda s, a: a
            if s is None
            else jnp.where(emit, jnp.zeros_like(a), s).astype(a.dtype),
            summed,
            state.acc_grads,
            is_leaf=_trees.is_none,
        ),
        skip_state=state.skip_state,
    )
    new_updates = jax.tree.map(
        lambda u: jnp.where(emit, u, jnp.zeros_like(u)), new_updates
    )
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class EmaParamsState(NamedTuple):
  """Keras' ``use_ema`` state: a moving average of the parameters."""

  # shape=(), dtype=int32: calls so far (Keras `iteration`). Named like optax's
  # counters (tuple.count is shadowed, as in optax's states).
  count: jax.Array  # type: ignore[assignment]
  ema_params: optax.Params  # like params: the average (Keras `*_average`).


def ema_params(
    momentum: jax.typing.ArrayLike,
    overwrite_frequency: Optional[int] = None,
    accumulation_steps: int = 1,
) -> optax.GradientTransformation:
  r"""Keras' parameter EMA, written back every ``overwrite_frequency`` steps.

  With :math:`p_t` the parameters after this call's update (``params +
  updates``, as :func:`optax.apply_updates` computes them), :math:`n` the
  calls so far and :math:`i = \lfloor n / k \rfloor` Keras' ``iterations``
  (:math:`k` = ``accumulation_steps``):

  .. math::

    \begin{align*}
      \alpha &\leftarrow \text{momentum if } i > 0 \text{ else } 0 \\
      e &\leftarrow \alpha\, e + (1 - \alpha)\, p_t \\
      u &\leftarrow e - p_{t-1}
        && \text{if } (i + 1) \bmod f = 0
    \end{align*}

  The average is updated on every call, an accumulation micro-step included,
  and the overwrite happens on every call of an overwriting group of
  :math:`k`, as in Keras' JAX backend. The overwrite returns the update
  :math:`e - p_{t-1}`, so ``optax.apply_updates`` gives :math:`e` exactly
  when :math:`e` and :math:`p_{t-1}` are within a factor 2 of each other
  (Sterbenz), else to one rounding. A ``None`` update leaf (no gradient: a
  frozen param, which Keras' ``_filter_empty_gradients`` drops) keeps its
  average and its ``None`` update.
  """

  def init_fn(params):
    return EmaParamsState(
        count=jnp.zeros([], jnp.int32),
        ema_params=jax.tree.map(jnp.zeros_like, _trees.as_arrays(params)),
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
          "use_ema needs the params: call tx.update(grads, state, params)"
      )
    updates, params = _trees.as_arrays(updates), _trees.as_arrays(params)
    iterations = state.count // accumulation_steps
    overwrite = None
    if overwrite_frequency:
      overwrite = (iterations + 1) % overwrite_frequency == 0

    def average(u, e, p):
      if p is None:  # a None param: nothing to average
        return None
      if u is None:  # a frozen param: its average does not move
        return e
      new_p = optax.apply_updates(p, u)
      alpha = (iterations != 0).astype(p.dtype) * momentum
      # Keras: add(multiply(m, average), multiply(subtract(1, m), var)).
      return _like(alpha * e + (1 - alpha) * new_p, e)

    new_ema = jax.tree.map(
        average, updates, state.ema_params, params, is_leaf=_trees.is_none
    )
    if overwrite is not None:
      updates = jax.tree.map(
          lambda u, e, p: u
          if p is None or u is None
          else jnp.where(overwrite, e - p, u),
          updates,
          new_ema,
          params,
          is_leaf=_trees.is_none,
      )
    new_state = EmaParamsState(
        count=optax.safe_increment(state.count), ema_params=new_ema
    )
    return updates, new_state

  return optax.GradientTransformation(init_fn, update_fn)
