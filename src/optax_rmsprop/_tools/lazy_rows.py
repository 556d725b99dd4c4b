"""`lazy_rows`: row-sparse ("lazy") updates around any elementwise transform."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import optax

from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._tools import stacked as _stacked

# Marks a leaf that is updated densely (a Python bool is a pytree leaf).
_DENSE = False


def _row_activity(updates: Any, mask: Any, axis: int) -> Any:
  """Per leaf: a bool array (one entry per row) or _DENSE.

  A row is an index along ``axis`` (1 where the leaves are stacked params,
  inside stack_leaves, whose rows each leaf's activity then holds). It is
  active when any entry of its gradient is nonzero (NaN counts as nonzero,
  so it still propagates). Leaves with no rows (0-d params) and leaves the
  mask excludes are dense; None gradient leaves stay None.
  """
  if mask is None:
    mask = True
  elif callable(mask):
    mask = mask(updates)
  # A mask may be a prefix of the tree (a bool for a whole subtree), as in
  # optax.masked: one bool per leaf from here on.
  mask = _trees.broadcast_prefix(mask, updates)

  def activity(g, lazy):
    if g is None:
      return None
    if not lazy or jnp.ndim(g) <= axis:
      return _DENSE
    return jnp.any(g != 0, axis=tuple(range(axis + 1, jnp.ndim(g))))

  return jax.tree.map(activity, updates, mask, is_leaf=_trees.is_none)


def _keep_inactive_rows(new, old, active):
  """``new`` on active rows, ``old`` on the others (one state leaf)."""
  if active is None or active is _DENSE or new is None:
    return new
  if tuple(jnp.shape(new)[: active.ndim]) != active.shape:
    raise ValueError(
        "lazy_rows: the inner transformation has a state leaf of shape"
        f" {jnp.shape(new)} in a slot that mirrors a parameter with"
        f" {active.shape[-1]} rows; lazy_rows needs an elementwise"
        " transformation, whose per-parameter state has the parameter's shape."
    )
  rows = active.reshape(active.shape + (1,) * (jnp.ndim(new) - active.ndim))
  return jnp.where(rows, new, old)


def lazy_rows(
    inner: optax.GradientTransformation,
    mask: Optional[Union[Any, Callable[[optax.Updates], Any]]] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Leaves every row whose gradient is all zero untouched: lazy updates.

  A row is an index along axis 0 of a parameter (a row of an embedding
  table). With :math:`A_t` the rows :math:`r` whose gradient
  :math:`g_{t,r}` has a nonzero entry, and :math:`(u_t, S_t)` the update and
  new state of ``inner`` run densely on :math:`g_t`:

  .. math::

    \begin{align*}
      u'_{t,r} &\leftarrow \begin{cases}
        u_{t,r} & r \in A_t \\ 0 & \text{otherwise}
      \end{cases} \\
      S'_{t,r} &\leftarrow \begin{cases}
        S_{t,r} & r \in A_t \\ S'_{t-1,r} & \text{otherwise}
      \end{cases}
      \quad \text{for each state leaf that mirrors a parameter}
    \end{align*}

  So an untouched row keeps its parameters, its averages and its momentum
  exactly: there is no decay, no momentum step, no weight decay. State that
  does not mirror the parameters (step counts, schedule counts, injected
  hyperparameters) advances as in ``inner``: a bias correction or an lr
  schedule keeps following the global step, like TF's sparse updates and
  ``LazyAdam``. The slots that mirror the parameters are found as
  :func:`optax.tree.map_params` finds them, so ``inner`` can be any optax
  transformation whose per-parameter state is built by mapping over the
  params (:func:`optax.rmsprop`, :func:`optax.adam`, :func:`rmsprop`, chains
  of them, ``optax.inject_hyperparams``); the state keeps ``inner``'s
  structure. ``inner`` must be elementwise along axis 0: a row's new update
  and state may depend only on that row and non-parameter state (not
  ``optax.clip_by_global_norm`` or factored second moments).

  This reproduces frameworks whose sparse gradients (TF1's ``IndexedSlices``
  from ``tf.gather`` or an embedding lookup) update only the rows looked
  up. A JAX gradient is dense, so "row absent from the batch" is read as
  "row of the gradient all zero": a row that was looked up but got an
  exactly zero gradient is also skipped (TF would decay it). Duplicate
  lookups need nothing: JAX's gather gradient already sums them, as TF sums
  duplicate indices before its sparse update. Nothing is saved in compute:
  ``inner`` runs on every row and the untouched ones are selected back.

  Which leaves are lazy: ``mask`` (as in :func:`optax.masked`, a tree of
  booleans or a function of the updates returning one; None: all). Leaves
  excluded by the mask, and 0-d leaves (no rows; TF never gives a scalar a
  sparse gradient), are updated densely, like a TF variable with a dense
  gradient, whose zero rows still decay. Mask only the tables a framework
  updates sparsely, or dense layers with a zero row (a dead unit) freeze
  where the framework would have decayed them. None gradient leaves pass
  through to ``inner``.

  Inside :func:`stack_leaves` (``stack_leaves(lazy_rows(inner))``), where
  ``inner`` sees same-shape parameters stacked along a new axis 0, a row is
  still a row of each parameter (axis 1 of the stacked arrays): the same
  updates as without the stacking. A tree ``mask`` would have to match the
  stacked groups there; mask outside the stacking instead.

  Args:
    inner: The transformation to make lazy (elementwise along axis 0).
    mask: Tree of booleans with the params' structure, or a function of the
      updates returning one, selecting the lazy leaves; None for all.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with ``inner``'s state.

  Raises:
    ValueError: at trace time, if a parameter-shaped slot of ``inner`` does
      not have its parameter's rows (``inner`` is not elementwise).

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.tools.lazy_rows(optax.adam(0.1))
    >>> table = jnp.ones((3, 2))
    >>> state = tx.init(table)
    >>> grads = jnp.array([[1.0, 0.0], [0.0, 0.0], [0.0, -2.0]])
    >>> updates, state = tx.update(grads, state)
    >>> updates  # row 1 had no gradient: no update
    Array([[-0.1, -0. ],
           [ 0. ,  0. ],
           [-0. ,  0.1]], dtype=float32)
    >>> state[0].nu  # ... and its second moment did not move
    Array([[0.001, 0.   ],
           [0.   , 0.   ],
           [0.   , 0.004]], dtype=float32)

  References:
    TensorFlow, ``tf.compat.v1.train.RMSPropOptimizer`` (sparse updates:
    "will not update variable slices or their accumulators unless those
    slices were used in the forward pass") and `the SparseApplyRMSProp
    kernels
    <https://github.com/tensorflow/tensorflow/blob/master/tensorflow/core/kernels/training_ops.cc>`_.

    TensorFlow Addons, `LazyAdam
    <https://www.tensorflow.org/addons/api_docs/python/tfa/optimizers/LazyAdam>`_.
  """
  return _lazy(inner, mask, "mask")


def _lazy(inner, mask, mask_name: str):
  """:func:`lazy_rows`, reporting a bad ``mask`` as ``mask_name``."""
  _trees.check_transform("inner", inner)
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    state = inner.init(params)
    _check_not_stacked(state)
    return state

  def update_fn(updates, state, params=None, **extra_args):
    _check_not_stacked(state)
    _trees.check_mask(mask_name, mask, updates)
    active = _row_activity(updates, mask, _stacked.row_axis())
    new_updates, new_state = inner.update(updates, state, params, **extra_args)
    new_updates = _trees.map_leaves(
        lambda u, a: _keep_inactive_rows(u, jnp.zeros_like(u), a),
        new_updates,
        active,
    )
    # Which leaves of the state mirror the params: inner.init on optax's
    # placeholder, the same discovery optax.tree.map_params does. Each such
    # leaf is replaced by its parameter's row activity, the rest by None.
    selector = optax.tree.map_params(
        inner,
        lambda _, a: a,
        new_state,
        active,
        transform_non_params=lambda _: None,
        is_leaf=_trees.is_none,
    )
    new_state = jax.tree.map(
        lambda a, n, o: _keep_inactive_rows(n, o, a),
        selector,
        new_state,
        state,
        is_leaf=_trees.is_none,
    )
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_not_stacked(state) -> None:
  """Raises TypeError if ``inner`` holds a stack_leaves state, whose stacked
  groups lazy_rows cannot match with the params' rows."""
  is_stacked = lambda x: isinstance(x, _stacked.StackLeavesState)  # noqa: E731
  if any(map(is_stacked, jax.tree.leaves(state, is_leaf=is_stacked))):
    raise TypeError(
        "lazy_rows cannot wrap stack_leaves (its state holds stacked groups,"
        " not the params' rows): put lazy_rows inside instead,"
        " stack_leaves(lazy_rows(inner))."
    )
