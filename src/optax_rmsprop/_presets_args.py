"""Argument handling shared by the framework presets."""

from __future__ import annotations

from typing import Any, Optional

from optax_rmsprop import _validation


def is_off(value: Any) -> bool:
  """Whether ``value`` is None or a concrete 0: the framework builds no state.

  PyTorch, Keras and timm allocate a momentum buffer only for momentum > 0
  and skip weight decay at 0. A traced or scheduled value cannot be inspected
  when the optimizer is built, so it counts as on (the buffer then exists and
  is merely multiplied by 0).
  """
  array = _validation._concrete(value)  # pylint: disable=protected-access
  return value is None or (array is not None and not array.any())


def unless_off(value: Any) -> Optional[Any]:
  """``value``, or None where :func:`is_off`: the core's "feature disabled"."""
  return None if is_off(value) else value
