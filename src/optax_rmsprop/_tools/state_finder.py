"""Finding states by type in an optimizer state, and the counts around them.

One walk, shared by :func:`rms_stats` and the torch and Keras converters: it
flattens the state with ``jax.tree_util.tree_flatten_with_path``, stopping at
the types asked for, the counters and the wrappers, so that it sees through
``optax.chain`` tuples, ``optax.masked``, ``optax.apply_if_finite`` and
``optax.partition`` / ``multi_transform`` (plain pytree nodes) and looks
into the wrappers whose context matters (``inject_hyperparams``' values,
``MultiSteps``' count, :func:`stack_leaves`' groups). Paths are jax key paths,
the same whether a wrapper is looked into or walked through, so a counter's
scope (a path prefix) says which states it counts for.

``optax.tree.get_all_with_path`` finds values by field or class *name*, one
at a time and without what encloses them, so it does not fit here.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import optax

from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._tools import stacked as _stacked

# Wrapper state types the finder looks into, and the field holding the inner
# state. Any other node is walked through as a plain pytree: the states in it
# are still found, but a wrapper left out here adds no context (e.g. without
# MultiStepsState its gradient_step counts nothing).
INNER_FIELD: Mapping[type, str] = {
    **{t: "inner_state" for t in _trees.INJECT_STATE_TYPES},
    optax.MultiStepsState: "inner_opt_state",
    _stacked.StackLeavesState: "inner_state",
}
WRAPPERS = tuple(INNER_FIELD)


class Found(NamedTuple):
  """A state found, and what encloses it."""

  path: tuple  # key path of the state in the tree walked
  state: Any
  hyperparams: Mapping[str, Any]  # enclosing inject_hyperparams', innermost
  # The innermost enclosing stack_leaves / MultiSteps state, or None.
  stack: Optional[_stacked.StackLeavesState]
  multisteps: Optional[optax.MultiStepsState]

  @property
  def group(self) -> Optional[Any]:
    """The label of the innermost ``optax.partition`` / ``multi_transform``
    group holding the state (``inner_states[label]``), or None."""
    label = None
    for key, next_key in zip(self.path, self.path[1:]):
      if getattr(key, "name", None) == "inner_states" and isinstance(
          next_key, jax.tree_util.DictKey
      ):
        label = next_key.key
    return label


class Counter(NamedTuple):
  """An update count, and the subtree whose updates it counts."""

  scope: tuple  # key path: the count applies to the states under it
  value: Any  # not `count`: a tuple method


class Finding(NamedTuple):
  """What :func:`find_states` found."""

  states: list[Found]  # in flatten order, a wrapper after what it holds
  counters: list[Counter]  # a wrapper's after those inside it


def has_field(state: Any, name: str) -> bool:
  """Whether ``state`` (a NamedTuple state) has the field ``name`` (and not
  ``tuple.count``, the method every NamedTuple has)."""
  return name in getattr(type(state), "_fields", ())


def scope_of(found: Found) -> tuple:
  """The subtree a counting state counts the updates of: the chain (parent
  tuple) a ``ScaleByScheduleState`` sits in, else what the state holds."""
  if isinstance(found.state, optax.ScaleByScheduleState):
    return found.path[:-1]
  return found.path


def in_scope(path: tuple, scope: tuple) -> bool:
  return tuple(path[: len(scope)]) == tuple(scope)


def nearest_count(counters: Sequence[Counter], *paths: tuple) -> Optional[Any]:
  """The count of the innermost counter whose scope holds one of ``paths``
  (the first of equally deep ones), or None."""
  best, depth = None, -1
  for counter in counters:
    if len(counter.scope) > depth and any(
        in_scope(p, counter.scope) for p in paths
    ):
      best, depth = counter.value, len(counter.scope)
  return best


def unwrap_variables(tree: Any) -> Any:
  """``tree`` with flax ``nnx.Variable`` leaves (``nnx.Optimizer`` keeps its
  state as ``OptState``/``OptArray`` variables) replaced by their values."""
  nnx = sys.modules.get("flax.nnx")
  if nnx is None:  # flax not imported: the tree cannot hold its variables
    return tree
  is_variable = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
  return jax.tree.map(
      lambda x: x.get_value() if is_variable(x) else x,
      tree,
      is_leaf=is_variable,
  )


def _counter(found: Found) -> Optional[Counter]:
  """The count ``found.state`` holds, if it is a counting state."""
  state = found.state
  if isinstance(state, optax.MultiStepsState):
    return Counter(found.path, state.gradient_step)
  if has_field(state, "count"):
    return Counter(scope_of(found), state.count)
  return None


def _walk(tree, path, context, stop, wrappers, visit):
  """``tree`` with each ``stop`` node replaced by ``visit(Found)``; a wrapper
  is visited after the nodes inside it, with its inner state replaced."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: isinstance(x, stop)
  )
  out = []
  for sub, node in flat:
    if isinstance(node, stop):
      here = path + tuple(sub)
      if isinstance(node, wrappers):
        field = next(f for t, f in INNER_FIELD.items() if isinstance(node, t))
        hyperparams, stack, multisteps = context
        if isinstance(node, _trees.INJECT_STATE_TYPES):
          hyperparams = {**hyperparams, **node.hyperparams}
        elif isinstance(node, optax.MultiStepsState):
          multisteps = node
        else:
          stack = node
        inner = _walk(
            getattr(node, field),
            here + (jax.tree_util.GetAttrKey(field),),
            (hyperparams, stack, multisteps),
            stop,
            wrappers,
            visit,
        )
        node = _replace(node, **{field: inner})
      node = visit(Found(here, node, *context))
    out.append(node)
  return treedef.unflatten(out)


def _replace(node: Any, **fields: Any) -> Any:
  if hasattr(node, "_replace"):  # optax's NamedTuples
    return node._replace(**fields)
  return dataclasses.replace(node, **fields)  # StackLeavesState


def map_states(
    fn: Callable[[Found], Any],
    tree: Any,
    types: tuple[type, ...],
    *,
    wrappers: tuple[type, ...] = WRAPPERS,
) -> Any:
  """``tree`` with each state of ``types``, each counter and each of
  ``wrappers`` replaced by ``fn(found)``; a wrapper's ``found.state``
  already holds its replaced inner state.

  Args:
    fn: Gets a :class:`Found` (with the context enclosing the node) and
      returns the node to put there.
    tree: An optimizer state.
    types: The state types to find.
    wrappers: Which of :data:`WRAPPERS` to look into with their context;
      the others are walked through as plain pytrees.
  """
  stop = tuple(types) + tuple(wrappers) + (optax.ScaleByScheduleState,)
  return _walk(tree, (), ({}, None, None), stop, tuple(wrappers), fn)


def find_states(
    tree: Any,
    types: tuple[type, ...],
    *,
    wrappers: tuple[type, ...] = WRAPPERS,
    nnx: bool = False,
) -> Finding:
  """The states of ``types`` in ``tree``, and the update counters.

  The counters: a found state's own ``count`` (for what it holds), an
  ``inject_hyperparams`` state's (for its inner state), a
  ``ScaleByScheduleState``'s (for its chain), ``MultiSteps``'
  ``gradient_step`` (for its inner state, where in ``wrappers``) and, with
  ``nnx``, an ``nnx.Optimizer``'s ``step`` (for all of it). Read a state's
  with :func:`nearest_count`.

  Args:
    tree: An optimizer state; with ``nnx``, also an ``nnx.Optimizer`` or a
      state holding ``nnx.Variable`` leaves.
    types: The state types to find.
    wrappers: As in :func:`map_states`.
    nnx: Look into an ``nnx.Optimizer`` and flax variables.
  """
  states: list[Found] = []
  counters: list[Counter] = []
  if nnx:
    step = getattr(tree, "step", None)
    if hasattr(tree, "opt_state"):  # an nnx.Optimizer
      tree = tree.opt_state
      if step is not None:
        counters.append(Counter((), unwrap_variables(step)))
    tree = unwrap_variables(tree)
  types = tuple(types)

  def visit(found: Found) -> Any:
    if isinstance(found.state, types):
      states.append(found)
    counter = _counter(found)
    if counter is not None:
      counters.append(counter)
    return found.state

  map_states(visit, tree, types, wrappers=wrappers)
  return Finding(states, counters)
