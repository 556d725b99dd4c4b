"""Small transforms that `rmsprop` chains around `scale_by_rms`."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import optax

from optax_rmsprop import _numerics
from optax_rmsprop import _validation


def momentum(
    decay: jax.typing.ArrayLike,
    nesterov: bool = False,
    accumulator_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
  r"""Heavy-ball (or Nesterov) momentum: ``optax.trace`` with a stable dtype.

  .. math::

    m_t \leftarrow u_t + \beta\, m_{t-1}, \qquad
    u'_t \leftarrow m_t \text{ (or } u_t + \beta\, m_t \text{ if nesterov)}

  Args:
    decay: :math:`\beta`, in [0, 1).
    nesterov: Whether to return the Nesterov look-ahead.
    accumulator_dtype: Storage dtype of :math:`m` (complexified for complex
      params); None keeps the params'. Updates keep their own dtype.
      Arithmetic is at least float32; the updates are computed from
      :math:`m_t` as stored (rounded to this dtype).

  Returns:
    An :class:`optax.GradientTransformation` whose state is
    :class:`optax.TraceState`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.momentum(0.5)
    >>> state = tx.init(jnp.zeros(1))
    >>> for _ in range(2):
    ...   u, state = tx.update(jnp.ones(1), state)
    >>> u
    Array([1.5], dtype=float32)

  References:
    Polyak, `Some methods of speeding up the convergence of iteration methods
    <https://doi.org/10.1016/0041-5553(64)90137-5>`_, 1964.
  """
  _validation.check_interval("momentum", decay, 0.0, 1.0, high_open=True)
  heavy_ball = optax.trace(decay, nesterov=False)

  def init_fn(params):
    return optax.TraceState(
        trace=jax.tree.map(  # zeros_like: inherit the params' sharding
            lambda p: jnp.zeros_like(
                p, _numerics.storage_dtype(p, accumulator_dtype)
            ),
            params,
        )
    )

  def update_fn(updates, state, params=None):
    del params
    # optax.trace promotes the buffer when updates are wider than it; keep
    # the buffer's dtype, and derive the updates from the buffer *as stored*
    # (rounded), like the RMS state (_scale_by_rms._as_stored): with a
    # bfloat16 buffer, using the unrounded value made XLA copy the buffer
    # every step (1.29x the float32-buffer step instead of 0.83x; NOTES §5b).
    compute = jax.tree.map(
        lambda u, t: _numerics.compute_dtype(jnp.promote_types(u.dtype, t.dtype)),
        updates, state.trace,
    )
    upcast = lambda tree: jax.tree.map(_numerics.cast, tree, compute)
    g = upcast(updates)
    summed, _ = heavy_ball.update(g, optax.TraceState(upcast(state.trace)))
    new_trace = jax.tree.map(  # g + β m, rounded to the buffer's dtype
        lambda n, t: _numerics.saturating_cast(n, t.dtype), summed, state.trace
    )
    new_updates = upcast(new_trace)
    if nesterov:  # the look-ahead g + β m_t is one more step from m_t
      new_updates, _ = heavy_ball.update(g, optax.TraceState(new_updates))
    new_updates = jax.tree.map(
        lambda n, u: _numerics.saturating_cast(n, u.dtype), new_updates, updates
    )
    return new_updates, optax.TraceState(trace=new_trace)

  return optax.GradientTransformation(init_fn, update_fn)


def add_decoupled_weight_decay(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: jax.typing.ArrayLike,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
) -> optax.GradientTransformation:
  r"""Adds the lr-scaled decay step :math:`-\eta_t \lambda p` to the updates.

  .. math::

    u'_t \leftarrow u_t - \eta_t \lambda\, p_{t-1}

  This is AdamW's decoupled decay, placed *after* momentum so the decay term
  never enters the momentum buffer and is never divided by the RMS. It is what
  Keras 3 does (``p -= p·λ·η`` before each step) and timm's
  ``decoupled_decay``. :math:`\eta_t` follows the schedule's count, like
  :func:`optax.scale_by_learning_rate`, which this reuses.

  Args:
    learning_rate: :math:`\eta`, a float or an optax schedule.
    weight_decay: :math:`\lambda` >= 0.
    mask: Tree of booleans (or a function of the params returning one) that
      selects the leaves to decay, as in :func:`optax.add_decayed_weights`.

  Returns:
    An :class:`optax.GradientTransformation` that needs ``params``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.add_decoupled_weight_decay(0.1, 0.5)
    >>> params = jnp.array([2.0])
    >>> u, _ = tx.update(jnp.zeros(1), tx.init(params), params)
    >>> u  # -0.1 * 0.5 * 2
    Array([-0.1], dtype=float32)

  References:
    Loshchilov & Hutter, `Decoupled Weight Decay Regularization
    <https://arxiv.org/abs/1711.05101>`_, 2019.
  """
  _validation.check_nonnegative("weight_decay", weight_decay)
  lr_scaling = optax.scale_by_learning_rate(learning_rate)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
          "decoupled weight decay needs the params: call"
          " tx.update(grads, state, params)"
      )
    decay_step, state = lr_scaling.update(
        jax.tree.map(lambda p: weight_decay * p, params), state
    )
    updates = jax.tree.map(
        lambda u, d: u + d.astype(u.dtype), updates, decay_step
    )
    return updates, state

  tx = optax.GradientTransformation(lr_scaling.init, update_fn)
  return optax.masked(tx, mask) if mask is not None else tx
