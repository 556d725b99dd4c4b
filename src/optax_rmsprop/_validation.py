"""Build-time checks of hyperparameters that let traced values through.

Values that are tracers (``optax.inject_hyperparams`` under ``jax.jit``) or
schedules (callables) cannot be inspected when the optimizer is built, so they
are skipped; every concrete value is checked, and the error names the argument.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np


def _concrete(value: Any) -> Optional[np.ndarray]:
  """``value`` as a NumPy array, or None if it cannot be inspected now."""
  if value is None or callable(value) or isinstance(value, jax.core.Tracer):
    return None
  try:
    return np.asarray(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None


def check_interval(
    name: str,
    value: Any,
    low: Optional[float] = None,
    high: Optional[float] = None,
    *,
    high_open: bool = False,
) -> None:
  """Raises ValueError unless ``low <= value <= high`` (``< high`` if open).

  NaN always fails. ``None``, schedules and traced values are not checked.
  """
  array = _concrete(value)
  if array is None:
    return
  if np.iscomplexobj(array):
    raise ValueError(f"{name} must be real, got {value!r}")
  ok = ~np.isnan(array)
  if low is not None:
    ok &= array >= low
  if high is not None:
    ok &= (array < high) if high_open else (array <= high)
  if not np.all(ok):
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    interval = f"[{lo}, {hi}{')' if high_open or high is None else ']'}"
    raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
  """Raises ValueError if ``value`` is negative or NaN (see check_interval)."""
  check_interval(name, value, low=0.0)


def known_at_least(value: Any, bound: float) -> bool:
  """Whether ``value`` is concrete now and ``>= bound`` (False if traced)."""
  array = _concrete(value)
  return array is not None and bool(np.all(array >= bound))
