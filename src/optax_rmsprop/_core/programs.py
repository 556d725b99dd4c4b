"""Which program updates a leaf: optax's own, or ours.

Bit-identity with optax cannot be had by writing the same formula: an extra
op anywhere in the step (even a select that changes no finite value) changes
the fused loop XLA emits and which multiply-adds the backend contracts into
FMAs, once the gradient is computed in the same jit. So where optax has a
program for a leaf (float32/float64, state in the leaf's dtype), the
transforms here call optax's own transformation on those leaves: the step
lowers to optax's program on every backend, by construction. Leaves optax
computes differently or not at all (bfloat16/float16, narrower state, opt-in
safe numerics) take ours.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Optional

import jax
import jax.numpy as jnp
import optax

from optax_rmsprop._rules import trees as _trees

# optax's own transforms, bound at import: where a program substitutes ours
# for optax's names (as the optax test-suite port does), these stay optax's.
SCALE_BY_RMS = optax.scale_by_rms
SCALE_BY_STDDEV = optax.scale_by_stddev
TRACE = optax.trace

EXACT_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))


def optax_dtype(update: jax.Array, *state: Optional[jax.Array]):
  """The dtype optax's program runs ``update``'s leaf in, or None.

  optax's when the update is real float32/float64 and every state array
  (``None``: absent) has its dtype; otherwise optax would promote or round
  differently, and ours computes it.
  """
  dtype = jnp.dtype(update.dtype)
  if dtype not in EXACT_DTYPES:
    return None
  if any(s is not None and jnp.dtype(s.dtype) != dtype for s in state):
    return None
  return dtype


class Partition:
  """The non-None leaves of ``updates``, grouped by a key per leaf.

  ``key_fn(update_leaf, *state_leaves)`` gives each leaf's group (e.g. a
  dtype for optax's program, None for ours); ``subtree`` rebuilds a tree
  holding one group's leaves (None elsewhere), and ``merge`` puts groups'
  results back in place.
  """

  def __init__(
      self,
      updates: Any,
      states: tuple[Any, ...],
      key_fn: Callable[..., Hashable],
  ):
    self.updates = updates
    treedef: Any = jax.tree.structure(updates, is_leaf=_trees.is_none)
    self.treedef = treedef
    flat = [treedef.flatten_up_to(updates)]
    flat += [
        [None] * len(flat[0]) if s is None else treedef.flatten_up_to(s)
        for s in states
    ]
    self.groups: dict[Hashable, list[int]] = {}
    for i, leaves in enumerate(zip(*flat)):
      if leaves[0] is not None:
        self.groups.setdefault(key_fn(*leaves), []).append(i)

  def subtree(self, key: Hashable, tree: Any) -> Any:
    """``tree`` (shaped like the updates) with only group ``key``'s leaves;
    the tree itself when that group holds every leaf."""
    index = self.groups[key]
    if len(self.groups) == 1:
      return tree
    keep = set(index)
    leaves = self.treedef.flatten_up_to(tree)
    return self.treedef.unflatten(
        [x if i in keep else None for i, x in enumerate(leaves)]
    )

  def merge(self, base: Any, results: dict[Hashable, Any]) -> Any:
    """``base`` with each group's leaves taken from ``results[key]``."""
    leaves = list(self.treedef.flatten_up_to(base))
    for key, tree in results.items():
      flat = self.treedef.flatten_up_to(tree)
      for i in self.groups[key]:
        leaves[i] = flat[i]
    return self.treedef.unflatten(leaves)
