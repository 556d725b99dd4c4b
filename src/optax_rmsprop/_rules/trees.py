"""Tree checks and conversions shared by the transforms.

``None`` leaves are treated as optax treats them: a ``None`` gradient (a
frozen or unused parameter) gives a ``None`` update, so every map here uses
``is_leaf=is_none`` to keep them in the structure instead of dropping them.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

# optax.inject_hyperparams' states (count, hyperparams, inner_state), which
# tools that read a state by type look through.
INJECT_STATE_TYPES = (
    optax.InjectHyperparamsState,
    optax.InjectStatefulHyperparamsState,
)


def is_none(x: Any) -> bool:
  return x is None


def map_leaves(f: Callable[..., Any], tree: Any, *rest: Any) -> Any:
  """``jax.tree.map`` that keeps ``None`` leaves of ``tree`` as ``None``."""
  return jax.tree.map(
      lambda x, *r: None if x is None else f(x, *r),
      tree,
      *rest,
      is_leaf=is_none,
  )


def path_label(path: Any) -> str:
  """A key path as a ``/``-separated name (``"layer/w"``, ``"0/nu"``), as
  loggers and Keras' variable paths write it."""
  return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
  """(``keystr`` path, leaf) pairs, ``None`` leaves included."""
  return [
      (jax.tree_util.keystr(path), leaf)
      for path, leaf in jax.tree_util.tree_leaves_with_path(
          tree, is_leaf=is_none
      )
  ]


def as_arrays(tree: Any) -> Any:
  """NumPy arrays and Python scalars as jax arrays; ``None`` stays ``None``.

  Python ints become weakly typed floats, as in ``1 + x``: a gradient or
  parameter written as ``0`` is a number, not an integer counter.
  """

  def convert(x):
    if isinstance(x, int) and not isinstance(x, bool):
      x = float(x)
    if isinstance(x, (bool, float, complex, np.ndarray, np.generic)):
      return jnp.asarray(x)
    return x  # jax arrays, tracers, ShapeDtypeStructs (abstract init)

  return map_leaves(convert, tree)


def check_inexact(tree: Any, what: str, role: str) -> None:
  """Raises ValueError naming the first integer or boolean leaf of ``tree``.

  Runs at trace time (dtypes are static). Integer leaves (a step counter in
  the params) have no gradient to follow; optax would silently compute an
  integer moving average.
  """
  for path, leaf in leaves_with_paths(tree):
    if leaf is None:
      continue
    dtype = _dtype(leaf)
    if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
      raise ValueError(
          f"{what}: {role} leaf at {path or '<root>'} has dtype {dtype}; only"
          " floating-point and complex leaves can be optimized. Exclude"
          " integer and boolean leaves with optax.masked(tx, mask) or"
          " optax.partition({..., 'frozen': optax.set_to_zero()}, labels)."
      )


def _dtype(leaf: Any):
  if isinstance(leaf, bool):
    return np.dtype(bool)
  if isinstance(leaf, (int, float, complex)):
    return np.result_type(float(leaf) if isinstance(leaf, int) else leaf)
  dtype = getattr(leaf, "dtype", None)  # arrays, ShapeDtypeStructs
  return None if dtype is None else np.dtype(dtype)


def check_transform(name: str, tx: Any) -> None:
  """Raises TypeError unless ``tx`` looks like a GradientTransformation."""
  if not (
      callable(getattr(tx, "init", None))
      and callable(getattr(tx, "update", None))
  ):
    hint = " (call it to build one)" if callable(tx) else ""
    raise TypeError(
        f"{name} must be an optax.GradientTransformation, got {tx!r}{hint}"
    )


def check_mask(name: str, mask: Any, tree: Any) -> None:
  """Raises ValueError/TypeError naming ``name`` unless ``mask`` (a tree of
  bools, or a function of ``tree`` returning one) is a prefix of ``tree``.

  Replaces the tree-structure error ``optax.masked`` would give, which names
  neither the argument nor what was expected.
  """
  if mask is None:
    return
  mask_tree = mask(tree) if callable(mask) else mask
  check_prefix(name, mask_tree, tree, "bools")
  for path, m in leaves_with_paths(mask_tree):
    if m is None or isinstance(m, (bool, np.bool_)):
      continue
    if getattr(m, "dtype", None) == np.dtype(bool) and jnp.ndim(m) == 0:
      continue  # a traced or concrete bool scalar
    raise TypeError(f"{name} at {path or '<root>'} must be a bool, got {m!r}")


def broadcast_prefix(prefix: Any, tree: Any) -> Any:
  """``prefix`` (a tree prefix of ``tree``, e.g. a mask) with each of its
  leaves repeated over the subtree of ``tree`` it stands for: one leaf per
  leaf of ``tree``, ``None`` leaves included, as ``optax.masked`` applies a
  mask whose leaf covers a whole subtree."""
  return jax.tree.map(
      lambda leaf, subtree: jax.tree.map(
          lambda _: leaf, subtree, is_leaf=is_none
      ),
      prefix,
      tree,
      is_leaf=is_none,
  )


def check_prefix(name: str, prefix: Any, tree: Any, of: str = "") -> None:
  """Raises ValueError naming ``name`` unless ``prefix`` is a tree prefix
  of ``tree`` (as ``optax.masked``/``optax.partition`` need)."""
  try:
    jax.tree.map(lambda m, x: None, prefix, tree, is_leaf=is_none)
  except ValueError as e:
    raise ValueError(
        f"{name} must be a tree{' of ' + of if of else ''} with the params'"
        f" structure (or a prefix of it): {' '.join(str(e).split())}\n"
        f" {name}: {jax.tree.structure(prefix, is_leaf=is_none)}\n params:"
        f" {jax.tree.structure(tree, is_leaf=is_none)}"
    ) from None


def check_complex(updates: Any, state_tree: Any, what: str) -> None:
  """Raises ValueError where a gradient is complex but its (complex-capable)
  state is real: the parameter was real when ``tx.init`` ran, and storing
  the complex average there would drop its imaginary part."""
  for (path, g), s in zip(
      leaves_with_paths(updates), jax.tree.leaves(state_tree, is_leaf=is_none)
  ):
    if g is None or s is None:
      continue
    if jnp.iscomplexobj(g) and not jnp.iscomplexobj(s):
      raise ValueError(
          f"{what}: gradient at {path or '<root>'} is complex but its"
          f" parameter was real ({jnp.result_type(s)}) when the state was"
          " initialised; init with complex params, or pass real gradients."
      )


def _where(tree: Any, other: Any) -> str:
  """Where two trees' structures first differ: the key path, then jax's
  words for it (which vary between jax versions), or "" if none found."""
  paths = [
      [
          path
          for path, _ in jax.tree_util.tree_flatten_with_path(
              t, is_leaf=is_none
          )[0]
      ]
      for t in (tree, other)
  ]
  where = ""
  for a, b in itertools.zip_longest(*paths):
    if a != b:
      a, b = a or (), b or ()
      common = 0
      while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
      keystr = jax.tree_util.keystr
      if common < min(len(a), len(b)):  # different keys at the same level
        where = f" at {keystr(a[: common + 1])} / {keystr(b[: common + 1])}"
      else:  # one path ends where the other goes on: that node differs
        where = f" at {keystr(min(a, b, key=len))}"
      break
  try:
    jax.tree.map(lambda *_: None, tree, other, is_leaf=is_none)
  except ValueError as e:
    return f"{where}: " + " ".join(str(e).split()).rstrip(".")
  return where


def check_matches(
    updates: Any, state_tree: Any, what: str, against: str = ""
) -> None:
  """Raises ValueError if ``updates`` does not have the state's structure.

  ``against``: what ``state_tree`` is, for the message (default: the
  optimizer state built by ``tx.init``; e.g. "the params").

  ``None`` gradients are allowed where the state has an array (frozen
  parameters) and where it has ``None`` (parameters that were ``None`` at
  init). Runs at trace time, so it costs nothing per step, and replaces
  jax's generic tree-mismatch message (or silent broadcasting of mismatched
  shapes) by one that says what went wrong.
  """
  got = jax.tree.structure(updates, is_leaf=is_none)
  want = jax.tree.structure(state_tree, is_leaf=is_none)
  if got != want:  # type: ignore[operator]  # (jax stubs: PyTreeDef?)
    other = against or (
        "the optimizer state, which was built by tx.init for another"
        " parameter tree"
    )
    where = _where(updates, state_tree)
    raise ValueError(
        f"{what}: the gradient tree does not match {other}{where}.\n"
        f" gradients: {got}\n {'params' if against else 'state'}:     {want}"
    )
  for (path, g), s in zip(
      leaves_with_paths(updates), jax.tree.leaves(state_tree, is_leaf=is_none)
  ):
    if g is None:
      continue
    if s is None:
      raise ValueError(
          f"{what}: gradient at {path or '<root>'} is an array, but its"
          " parameter was None when the state was initialised."
      )
    if jnp.shape(g) != jnp.shape(s):
      other = "its param" if against else "its optimizer state"
      raise ValueError(
          f"{what}: gradient at {path or '<root>'} has shape {jnp.shape(g)}"
          f" but {other} has shape {jnp.shape(s)}."
      )
