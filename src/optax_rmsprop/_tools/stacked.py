"""`stack_leaves`: run an elementwise transform on same-shape leaves stacked."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_rmsprop._rules import optax_compat as _optax_compat
from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._rules import validation as _validation


class Group(NamedTuple):
  """Params stacked into one array (static, hashable)."""

  indices: tuple[int, ...]  # positions in tree-flatten order (None counted)
  shape: tuple[int, ...]  # each param's shape
  dtype: str  # the params' dtype


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["inner_state"],
    meta_fields=["groups", "num_leaves"],
)
@dataclasses.dataclass(frozen=True)
class StackLeavesState:
  """State of :func:`stack_leaves`: the inner state, over the stacked groups."""

  inner_state: optax.OptState  # inner's state for the tuple of groups.
  # Static (pytree metadata): fixed at init from the params' shapes, dtypes
  # and shardings, so that the gradients' dtypes cannot regroup them.
  groups: tuple[Group, ...] = ()
  num_leaves: int = 0  # leaves of the params tree, None leaves counted


# The params' shardings (flattened, None counted) while state_shardings or
# init_sharded trace tx.init: tracers do not carry them.
_PARAM_SHARDINGS: contextvars.ContextVar[Optional[list[Any]]] = (
    contextvars.ContextVar("param_shardings", default=None)
)
# Set while state_shardings maps over a state with optax.tree_map_params.
_MAPPING_SHARDINGS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mapping_shardings", default=False
)


# Set while stack_leaves runs its inner update: the leaves ``inner`` sees are
# stacked params, their axis 0 the stacking axis, so a parameter's rows are
# along axis 1 (for lazy_rows).
_STACKED_UPDATE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "stacked_update", default=False
)


# Set while stack_leaves runs its inner init: a stack_leaves inside one
# refuses (see init_fn).
_STACKED_INIT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "stacked_init", default=False
)


def row_axis() -> int:
  """The axis of a parameter's rows in the leaves an update sees now: 1
  inside :func:`stack_leaves`, else 0."""
  return 1 if _STACKED_UPDATE.get() else 0


@contextlib.contextmanager
def sharding_context(shardings: Optional[list[Any]], mapping: bool = False):
  """For :mod:`_sharding`: the params' shardings, and whether
  ``optax.tree_map_params`` is mapping over the state."""
  tokens = (_PARAM_SHARDINGS.set(shardings), _MAPPING_SHARDINGS.set(mapping))
  try:
    yield
  finally:
    _PARAM_SHARDINGS.reset(tokens[0])
    _MAPPING_SHARDINGS.reset(tokens[1])


class StackedStateMarker:
  """``stack_leaves``' init result for optax's params placeholder while
  :func:`state_shardings` maps a state: a leaf, so the whole
  :class:`StackLeavesState` reaches its ``transform_non_params``."""


def _sharding_of(leaf: Any) -> Any:
  """A concrete array's sharding, or None where it cannot be read now."""
  if leaf is None or isinstance(leaf, jax.core.Tracer):
    return None
  return getattr(leaf, "sharding", None)


def _groups(
    leaves: Sequence[Any],
    max_size: int,
    max_leaf_size: int,
    shardings: Optional[Sequence[Any]] = None,
) -> tuple[Group, ...]:
  """The leaves grouped by (shape, dtype, sharding), in first-seen order.

  ``None`` leaves belong to no group. Groups hold at most ``max_size``
  leaves: XLA's compile time for a concatenate grows faster than linearly
  in its operand count. Leaves of more than ``max_leaf_size`` elements stay
  alone: stacking one is a free reshape, stacking several costs two array
  passes per step that their kernel-launch savings do not repay.
  """
  if shardings is None or len(shardings) != len(leaves):
    shardings = [_sharding_of(leaf) for leaf in leaves]
  by_key: dict[Any, list[int]] = {}
  for i, leaf in enumerate(leaves):
    if leaf is None:
      continue
    shape = tuple(jnp.shape(leaf))
    key: Any = (shape, np.dtype(jnp.result_type(leaf)), shardings[i])
    if int(np.prod(shape)) > max_leaf_size:
      key = i  # a group of its own
    by_key.setdefault(key, []).append(i)
  groups = []
  for idx in by_key.values():
    leaf = leaves[idx[0]]
    shape = tuple(jnp.shape(leaf))
    dtype = np.dtype(jnp.result_type(leaf)).name
    for k in range(0, len(idx), max_size):
      groups.append(Group(tuple(idx[k : k + max_size]), shape, dtype))
  return tuple(groups)


def _stack(leaves, groups: tuple[Group, ...]) -> tuple[jax.Array, ...]:
  """Each group's leaves stacked; a None leaf (frozen) as zeros."""

  def leaf(i, group):
    if leaves[i] is None:
      others = [leaves[j] for j in group.indices if leaves[j] is not None]
      dtype = others[0].dtype if others else group.dtype
      return jnp.zeros(group.shape, dtype)
    return leaves[i]

  return tuple(jnp.stack([leaf(i, g) for i in g.indices]) for g in groups)


def _is_optax_placeholder(params: Any) -> bool:
  """Whether ``params`` is the object optax.tree_map_params calls init with."""
  return isinstance(params, _optax_compat.ParamsPlaceholder)


class _GroupMarker:
  """A childless pytree node: ``inner.init`` returns it where its state
  mirrors the params (the trick of optax.tree_map_params' placeholder)."""


jax.tree_util.register_pytree_node(
    _GroupMarker, lambda _: ((), None), lambda *_: _GroupMarker()
)


def _keep_frozen_rows(inner, new_state, old_state, frozen):
  """``new_state`` with the rows of frozen (None-gradient) params restored
  from ``old_state``, in every params-shaped part of ``inner``'s state."""

  def restore(marker, new, old):
    if not isinstance(marker, _GroupMarker):
      return new
    return tuple(
        jax.tree.map(
            lambda n, o, f=f: jnp.where(
                f.reshape(f.shape + (1,) * (n.ndim - 1)), o, n
            ),
            new_k,
            old_k,
        )
        for new_k, old_k, f in zip(new, old, frozen)
    )

  return jax.tree.map(
      restore,
      inner.init(_GroupMarker()),
      new_state,
      old_state,
      is_leaf=lambda x: isinstance(x, _GroupMarker),
  )


def stack_leaves(
    inner: optax.GradientTransformation,
    max_group_size: int = 32,
    max_leaf_size: int = 1 << 16,
) -> optax.GradientTransformationExtraArgs:
  r"""Runs ``inner`` on the tree's leaves stacked by shape and dtype.

  Leaves of equal shape and dtype are stacked into one array,
  :math:`S_k = \mathrm{stack}(x_i : i \in G_k)`, ``inner`` runs on the tuple
  :math:`(S_1, \dots, S_K)` of groups, and its updates are unstacked back
  into the input's tree:

  .. math::

    (U_1, \dots, U_K),\ s_t \leftarrow
      \mathrm{inner}((S_1(g_t), \dots, S_K(g_t)),\ s_{t-1},\
                     (S_1(p), \dots, S_K(p))), \qquad
    u_{t,i} \leftarrow U_k[j] \ \text{ for leaf } i = G_k[j]

  The state then holds a few large arrays instead of one per leaf, so a tree
  of thousands of small leaves (e.g. per-layer weights of a deep MLP) compiles
  to fewer, larger fused loops and a jitted step passes fewer buffers. For a
  transform that acts elementwise, such as :func:`rmsprop` (any options but
  tree-valued ``weight_decay_mask``), the updates are those of running
  ``inner`` on the tree itself, up to the rounding of a multiply-add that
  XLA may fuse into an FMA in one layout and not the other (at most an ulp
  per step); unlike :func:`optax.flatten`, nothing is concatenated across
  shapes.

  The groups are fixed at ``init`` from the params' shapes, dtypes and (for
  concrete arrays, or under :func:`init_sharded` / :func:`state_shardings`)
  shardings, and kept in the state: gradients of another dtype (bfloat16
  params, float32 gradients) use the same groups, and leaves with different
  shardings are never stacked together. ``None`` gradient leaves give
  ``None`` updates and leave their rows of the state as they were; ``None``
  params get no state.

  ``inner`` must not depend on the tree structure or on leaf shapes: a mask
  given as a tree, or a per-leaf norm (``optax.clip_by_global_norm`` is fine,
  a per-leaf ``optax.scale_by_trust_ratio`` is not), sees the groups instead.
  Wrap masks outside: ``optax.masked(stack_leaves(tx), mask)``.

  Args:
    inner: An elementwise :class:`optax.GradientTransformation`.
    max_group_size: Most leaves stacked into one array; larger groups are
      split (XLA compiles huge concatenations slowly).
    max_leaf_size: Leaves with more elements are not stacked. Stacking
      copies the gradients in and the updates out (two array passes), which
      pays only while a leaf's kernel-launch overhead exceeds its memory
      time: on a 2-core CPU up to ~64K elements (the default); on a GPU,
      where launches cost more than moving 64K elements, raise it (e.g.
      ``1 << 20``).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is
    :class:`StackLeavesState`; extra arguments are passed on to ``inner``.

  Raises:
    TypeError: from :func:`optax.tree_map_params`, which cannot see through
      the stacking (use :func:`state_shardings` for shardings).
    ValueError: at ``update``, if the gradient tree does not match the
      params the state was built for; at ``init``, for a ``stack_leaves``
      inside ``inner`` (the leaves are stacked already).

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> params = {'a': jnp.ones(3), 'b': jnp.zeros(3), 'c': jnp.ones(2)}
    >>> tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1))
    >>> state = tx.init(params)
    >>> [nu.shape for nu in state.inner_state[0].nu]  # 'a' and 'b' stacked
    [(2, 3), (1, 2)]
    >>> updates, state = tx.update(params, state, params)
    >>> updates['a']  # -0.1 * g / sqrt(0.1 g^2), as without stacking
    Array([-0.31622776, -0.31622776, -0.31622776], dtype=float32)

  References:
    `optax.flatten <https://optax.readthedocs.io/en/latest/api/combining_optimizers.html#optax.flatten>`_,
    which concatenates all leaves into one vector instead.
  """
  _trees.check_transform("inner", inner)
  _validation.check_count("max_group_size", max_group_size, 1)
  _validation.check_count("max_leaf_size", max_leaf_size, 0)
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    if _STACKED_INIT.get():
      # Its groups would be the outer groups, already stacked (nothing more
      # to stack), and the outer could not restore a frozen param's rows in
      # the regrouped state.
      raise ValueError(
          "stack_leaves inside stack_leaves: the outer one already stacks"
          " the leaves; use one stack_leaves(inner)"
      )
    if _is_optax_placeholder(params):
      if _MAPPING_SHARDINGS.get():
        return StackedStateMarker()
      raise TypeError(
          "optax.tree_map_params cannot map over a stack_leaves state: it"
          " holds stacked groups of params, not params-shaped trees. For"
          " shardings use optax_rmsprop.tools.state_shardings or init_sharded,"
          " which know the groups."
      )
    params = _trees.as_arrays(params)
    _trees.check_inexact(params, "stack_leaves", "parameter")
    leaves = jax.tree.leaves(params, is_leaf=_trees.is_none)
    groups = _groups(
        leaves, max_group_size, max_leaf_size, _PARAM_SHARDINGS.get()
    )
    token = _STACKED_INIT.set(True)
    try:
      inner_state = inner.init(_stack(leaves, groups))
    finally:
      _STACKED_INIT.reset(token)
    return StackLeavesState(inner_state, groups, len(leaves))

  def update_fn(updates, state, params=None, **extra_args):
    updates = _trees.as_arrays(updates)
    leaves, treedef = jax.tree.flatten(updates, is_leaf=_trees.is_none)
    _check_matches(leaves, treedef, state, updates)
    _trees.check_inexact(updates, "stack_leaves", "gradient")
    stacked_params = None
    if params is not None:
      param_leaves = treedef.flatten_up_to(_trees.as_arrays(params))
      stacked_params = _stack(param_leaves, state.groups)
    token = _STACKED_UPDATE.set(True)
    try:
      stacked_updates, inner_state = inner.update(
          _stack(leaves, state.groups),
          state.inner_state,
          stacked_params,
          **extra_args,
      )
    finally:
      _STACKED_UPDATE.reset(token)
    frozen = [[leaves[i] is None for i in g.indices] for g in state.groups]
    if any(map(any, frozen)):
      inner_state = _keep_frozen_rows(
          inner, inner_state, state.inner_state, [np.array(f) for f in frozen]
      )
    new_leaves: list[Any] = [None] * len(leaves)
    for group, stacked in zip(state.groups, stacked_updates):
      for j, i in enumerate(group.indices):
        if leaves[i] is not None:
          new_leaves[i] = stacked[j].astype(leaves[i].dtype)
    return treedef.unflatten(new_leaves), dataclasses.replace(
        state, inner_state=inner_state
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_matches(leaves, treedef, state: StackLeavesState, tree) -> None:
  """Raises ValueError unless the gradients fit the params of ``init``."""
  in_group = {i: g for g in state.groups for i in g.indices}
  problem = None
  if len(leaves) != state.num_leaves:
    problem = f"{len(leaves)} gradient leaves for {state.num_leaves} params"
  else:
    paths = [path for path, _ in _trees.leaves_with_paths(tree)]
    for i, leaf in enumerate(leaves):
      if leaf is None:
        continue
      if i not in in_group:
        problem = f"gradient at {paths[i]} has no state (its param was None)"
      elif tuple(jnp.shape(leaf)) != in_group[i].shape:
        problem = (
            f"gradient at {paths[i]} has shape {jnp.shape(leaf)}, its param"
            f" {in_group[i].shape}"
        )
      elif jnp.iscomplexobj(leaf) and not jnp.issubdtype(
          in_group[i].dtype, jnp.complexfloating
      ):
        problem = (
            f"gradient at {paths[i]} is complex, its param was"
            f" {in_group[i].dtype}"
        )
      if problem:
        break
  if problem:
    raise ValueError(
        "stack_leaves: the gradient tree does not match the optimizer state,"
        f" which was built by tx.init for another parameter tree: {problem}."
        f"\n gradients: {treedef}"
    )


def stacked_shardings(state: StackLeavesState, param_shardings, replicated):
  """Shardings for a :class:`StackLeavesState` (for :func:`state_shardings`).

  A group's params share one sharding (they were grouped by it); its stacked
  array adds a leading, unsharded axis. Inner state leaves found at index
  ``k`` of a tuple with group ``k``'s stacked shape get that sharding (the
  params-shaped parts of an elementwise transform's state); the rest, such
  as counts, are replicated.
  """

  def stacked(group: Group):
    sharding = param_shardings[group.indices[0]]
    if isinstance(sharding, jax.sharding.NamedSharding):
      return jax.sharding.NamedSharding(
          sharding.mesh, jax.sharding.PartitionSpec(None, *sharding.spec)
      )
    if isinstance(sharding, jax.sharding.SingleDeviceSharding):
      return sharding
    raise ValueError(
        f"stack_leaves: cannot stack params with sharding {sharding};"
        " use NamedSharding (or don't stack sharded params)."
    )

  per_group = [stacked(g) for g in state.groups]
  shapes = [(len(g.indices),) + g.shape for g in state.groups]

  def choose(path, leaf):
    key = path[-1] if path else None
    if isinstance(key, jax.tree_util.SequenceKey) and key.idx < len(shapes):
      if tuple(leaf.shape) == shapes[key.idx]:
        return per_group[key.idx]
    return replicated

  inner = jax.tree_util.tree_map_with_path(choose, state.inner_state)
  return dataclasses.replace(state, inner_state=inner)
