"""Small transforms that `rmsprop` chains around `scale_by_rms`."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import optax

from optax_rmsprop._core import programs as _programs
from optax_rmsprop._rules import numerics as _numerics
from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._rules import validation as _validation


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

  For float32/float64 this is :func:`optax.trace` bit for bit, with the same
  state (:class:`optax.TraceState`). A ``None`` update (frozen parameter)
  stays ``None`` and leaves its buffer as it is (``optax.trace`` replaces the
  buffer by ``None``, which changes the state's structure).

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
  _validation.check_interval("decay", decay, 0.0, 1.0, high_open=True)
  _validation.check_flag("nesterov", nesterov)
  _validation.check_dtype("accumulator_dtype", accumulator_dtype)
  decay = _validation.host_scalar(decay)

  def init_fn(params):
    params = _trees.as_arrays(params)
    _trees.check_inexact(params, "momentum", "parameter")
    return optax.TraceState(
        trace=_trees.map_leaves(  # zeros_like: inherit the params' sharding
            lambda p: jnp.zeros_like(
                p, _numerics.storage_dtype(p, accumulator_dtype)
            ),
            params,
        )
    )

  def leaf(u, m):
    # optax.trace's operations (u + β m, then u + β m_t for nesterov), in
    # at least float32. The buffer keeps its dtype (optax.trace promotes it
    # when updates are wider), and the updates come from m_t as stored
    # (rounded), like the RMS state.
    cdtype = _numerics.compute_dtype(jnp.promote_types(u.dtype, m.dtype))
    beta = _numerics.hyper(decay, cdtype)
    u_c = _numerics.cast(u, cdtype)
    stored = _numerics.saturating_cast(
        u_c + beta * _numerics.cast(m, cdtype), m.dtype
    )
    new_u = _numerics.cast(stored, cdtype)
    if nesterov:
      new_u = u_c + beta * new_u
    return _numerics.saturating_cast(new_u, u.dtype), stored

  def own_update(updates, trace):
    out = jax.tree.map(
        lambda u, m: (None, m) if u is None else leaf(u, m),
        updates,
        trace,
        is_leaf=_trees.is_none,
    )
    treedef = jax.tree.structure(updates, is_leaf=_trees.is_none)
    pairs = treedef.flatten_up_to(out)
    return treedef.unflatten([u for u, _ in pairs]), optax.TraceState(
        trace=treedef.unflatten([m for _, m in pairs])
    )

  def update_fn(updates, state, params=None):
    del params
    updates = _trees.as_arrays(updates)
    _trees.check_matches(updates, state.trace, "momentum")
    _trees.check_complex(updates, state.trace, "momentum")
    # optax.trace itself where it computes a leaf as we would (see
    # _programs): float32/float64 updates with a buffer of their dtype.
    parts = _programs.Partition(updates, (state.trace,), _programs.optax_dtype)
    results = {}
    for key in parts.groups:
      sub = parts.subtree(key, updates)
      if key is None:
        results[key] = own_update(sub, state.trace)
      else:
        trace = _programs.TRACE(_numerics.hyper(decay, key), nesterov)
        results[key] = trace.update(sub, state)
    new_updates = parts.merge(updates, {k: u for k, (u, _) in results.items()})
    new_trace = parts.merge(
        state.trace, {k: s.trace for k, (_, s) in results.items()}
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
  _validation.check_nonnegative("learning_rate", learning_rate, schedule=True)
  _validation.check_nonnegative("weight_decay", weight_decay)
  lr_scaling = optax.scale_by_learning_rate(learning_rate)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
          "decoupled weight decay needs the params: call"
          " tx.update(grads, state, params)"
      )
    updates = _trees.as_arrays(updates)
    params = _trees.as_arrays(params)
    _trees.check_matches(
        updates, params, "decoupled weight decay", against="the params"
    )
    decay_step, state = lr_scaling.update(
        _trees.map_leaves(lambda u, p: weight_decay * p, updates, params),
        state,
    )
    updates = _trees.map_leaves(
        lambda u, d: u + d.astype(u.dtype), updates, decay_step
    )
    return updates, state

  tx = optax.GradientTransformation(lr_scaling.init, update_fn)
  return masked(tx, mask, "mask")


def keep_dtypes(
    tx: optax.GradientTransformation,
) -> optax.GradientTransformation:
  """``tx`` (same state) whose updates keep the dtypes of its inputs.

  An array hyperparameter of a wider dtype (``optax.inject_hyperparams``
  with float32 hyperparameters, its default for a tree that mixes float32
  and bfloat16 params) would otherwise promote bfloat16 updates (an lr,
  a weight decay), and what the transforms after it see. No op at all where
  the dtypes agree (optax's program is unchanged).
  """

  def update_fn(updates, state, params=None):
    new_updates, state = tx.update(updates, state, params)
    # (A Python-number update has no dtype of its own to keep.)
    new_updates = jax.tree.map(
        lambda n, u: n
        if not hasattr(u, "dtype")
        else _numerics.cast(n, u.dtype),
        new_updates,
        updates,
        is_leaf=_trees.is_none,
    )
    return new_updates, state

  return optax.GradientTransformation(tx.init, update_fn)


def add_coupled_weight_decay(
    weight_decay: jax.typing.ArrayLike, mask: Any = None, mask_name="mask"
) -> optax.GradientTransformation:
  """``optax.add_decayed_weights`` (same state), with its gradient/params
  mismatches and ``mask`` reported by name instead of as a broadcasting or
  tree-structure error from deep inside JAX."""
  tx = masked(optax.add_decayed_weights(weight_decay), mask, mask_name)

  def update_fn(updates, state, params=None):
    if params is not None:
      _trees.check_matches(
          _trees.as_arrays(updates),
          _trees.as_arrays(params),
          "coupled weight decay",
          against="the params",
      )
    return tx.update(updates, state, params)

  return keep_dtypes(optax.GradientTransformation(tx.init, update_fn))


def masked(
    tx: optax.GradientTransformation, mask: Any, name: str
) -> optax.GradientTransformation:
  """``optax.masked(tx, mask)`` (same state) that checks ``mask`` first,
  naming the argument ``name`` it came from; ``tx`` itself if no mask."""
  if mask is None:
    return tx
  inner = optax.masked(tx, mask)

  def init_fn(params):
    _trees.check_mask(name, mask, params)
    return inner.init(params)

  def update_fn(updates, state, params=None):
    if not callable(mask) or params is None:
      _trees.check_mask(name, mask, updates)
      return inner.update(updates, state, params)
    # A mask function is one of the params (as at init). optax.masked calls
    # it on the updates, whose None leaves (frozen params) would give a mask
    # that it then cannot apply to the params.
    mask_tree = mask(params)
    _trees.check_mask(name, mask_tree, updates)
    return optax.masked(tx, mask_tree).update(updates, state, params)

  return optax.GradientTransformation(init_fn, update_fn)
