"""Argument handling shared by the framework presets."""

from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np


def is_off(value: Any) -> bool:
  """Whether ``value`` is None or a Python/NumPy 0: the framework has no state.

  PyTorch, Keras and timm allocate a momentum buffer only for momentum > 0
  and skip weight decay at 0. A jax array always counts as on, even a
  concrete 0: ``optax.inject_hyperparams`` builds the transform from concrete
  arrays in ``init`` and from tracers in ``update``, and both must give the
  same state structure.
  """
  if value is None:
    return True
  if isinstance(value, jax.Array) or callable(value):
    return False
  return not np.asarray(value).any()


def unless_off(value: Any) -> Optional[Any]:
  """``value``, or None where :func:`is_off`: the core's "feature disabled"."""
  return None if is_off(value) else value
