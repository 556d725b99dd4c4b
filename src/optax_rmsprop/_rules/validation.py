"""Build-time checks of hyperparameters that let traced values through.

Values that are tracers (``optax.inject_hyperparams`` under ``jax.jit``) or
schedules (callables, where a schedule is allowed) cannot be inspected when
the optimizer is built, so they are skipped; every concrete value is checked
(its type, that it is a finite scalar, its range), and the error names the
argument.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np


def _concrete(name: str, value: Any, optional: bool, schedule: bool):
  """``value`` as a NumPy scalar, or None if it cannot be inspected now.

  Raises TypeError, naming the argument, for what cannot be a number: None
  (unless ``optional``: "feature off"), a callable (unless ``schedule``),
  a bool, a string, a container, a non-numeric array; ValueError for an
  array that is not a scalar.
  """
  if value is None:
    if optional:
      return None
    raise TypeError(f"{name} must be a number, got None")
  if callable(value):
    if schedule:
      return None
    raise TypeError(
        f"{name} must be a number, got the callable {value!r}; only the"
        " learning rate takes a schedule here (schedule others with"
        " optax.inject_hyperparams)"
    )
  if isinstance(value, jax.core.Tracer):
    return None
  if isinstance(value, (str, bytes, list, tuple, dict, set)):
    raise TypeError(
        f"{name} must be a number, got {type(value).__name__} {value!r}"
    )
  try:
    array = np.asarray(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None
  if array.dtype == bool or not jnp.issubdtype(array.dtype, jnp.number):
    raise TypeError(f"{name} must be a number, got {value!r} ({array.dtype})")
  if array.ndim:
    raise ValueError(
        f"{name} must be a scalar, got an array of shape {array.shape}"
    )
  return array


def check_interval(
    name: str,
    value: Any,
    low: Optional[float] = None,
    high: Optional[float] = None,
    *,
    high_open: bool = False,
    optional: bool = False,
    schedule: bool = False,
) -> None:
  """Raises ValueError unless ``low <= value <= high`` (``< high`` if open).

  NaN and ±inf always fail. Traced values are not checked, schedules only
  where ``schedule`` and None only where ``optional`` (else TypeError).
  """
  array = _concrete(name, value, optional, schedule)
  if array is None:
    return
  if np.iscomplexobj(array):
    # optax.inject_hyperparams stores hyperparameters in the params' dtype:
    # complex for complex params, with a zero imaginary part.
    if np.any(array.imag != 0):
      raise ValueError(f"{name} must be real, got {value!r}")
    array = array.real
  if np.isinf(array):
    raise ValueError(f"{name} must be finite, got {value!r}")
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


def check_nonnegative(
    name: str, value: Any, *, optional: bool = False, schedule: bool = False
) -> None:
  """Raises ValueError if ``value`` is negative, NaN or infinite (see
  check_interval)."""
  check_interval(name, value, low=0.0, optional=optional, schedule=schedule)


def is_number_like(value: Any) -> bool:
  """Whether ``value`` is a (non-bool) number or numeric scalar array."""
  if isinstance(value, (bool, np.bool_)):
    return False
  if isinstance(value, (int, float, complex, np.number)):
    return True
  dtype = getattr(value, "dtype", None)
  return (
      dtype is not None
      and jnp.ndim(value) == 0
      and jnp.issubdtype(dtype, jnp.number)
  )


def check_flag(name: str, value: Any) -> None:
  """Raises TypeError unless ``value`` is a bool (Python's or NumPy's).

  A switch that changes the chain's structure must be known when it is
  built: under ``optax.inject_hyperparams`` anything but a Python bool is
  traced, and ``if centered:`` would fail deep inside JAX.
  """
  if isinstance(value, (bool, np.bool_)):
    return
  if isinstance(value, jax.core.Tracer):
    raise TypeError(
        f"{name} must be a Python bool, but it is traced: under"
        " optax.inject_hyperparams pass True/False (a NumPy or JAX bool is"
        " traced), or name it in static_args"
    )
  raise TypeError(f"{name} must be a bool, got {value!r}")


def check_count(
    name: str, value: Any, minimum: int, *, optional: bool = False
) -> None:
  """Raises TypeError/ValueError unless ``value`` is an integer (a Python or
  NumPy int, or a float with an integer value) in [minimum, 2**31 - 1]."""
  if value is None and optional:
    return
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)
  ):
    raise TypeError(f"{name} must be an integer, got {value!r}")
  if not float(value).is_integer() or not minimum <= value < 2**31:
    raise ValueError(
        f"{name} must be an integer in [{minimum}, 2**31 - 1], got {value!r}"
    )


def check_dtype(name: str, value: Any) -> None:
  """Raises TypeError/ValueError unless ``value`` is None or names a
  floating-point (or complex) dtype."""
  if value is None:
    return
  try:
    dtype = jnp.dtype(value)
  except TypeError:
    raise TypeError(f"{name} must be a dtype, got {value!r}") from None
  if not jnp.issubdtype(dtype, jnp.inexact):
    raise ValueError(f"{name} must be a floating-point dtype, got {dtype}")


def known_at_least(value: Any, bound: float) -> bool:
  """Whether ``value`` is concrete now and ``>= bound`` (False if traced)."""
  if value is None or callable(value) or isinstance(value, jax.core.Tracer):
    return False
  try:
    array = np.asarray(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return False
  numeric = jnp.issubdtype(array.dtype, jnp.number)
  return numeric and bool(np.all(array >= bound))


def host_scalar(value: Any) -> Any:
  """A NumPy scalar (or 0-d NumPy array) as the Python number it holds.

  A Python number is weakly typed: it takes the dtype of the array it meets,
  whereas ``np.float64(0.9)`` would promote a float32 state to float64 under
  ``jax_enable_x64``. The value (a double) is the same, so the results are
  those of the equal Python float. Anything else is returned as it is.
  """
  if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
    return value.item()
  return value
