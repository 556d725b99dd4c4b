"""Dtype handling shared by the transforms: promote, compute, saturate back."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def compute_dtype(dtype) -> np.dtype:
  """The dtype arithmetic runs in: at least float32 (float16/bfloat16 promote).

  Low-precision inputs are promoted because ε (1e-8) underflows to 0 in
  float16 and |g|² overflows at |g| > 256 (optax#1784).
  """
  return jnp.promote_types(dtype, jnp.float32)


def real_dtype(dtype) -> np.dtype:
  """The real counterpart of ``dtype`` (complex64 -> float32)."""
  return jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.inexact) else dtype


def storage_dtype(param, requested=None, real: bool = False) -> np.dtype:
  """Dtype of a state array for ``param``: ``requested``, else the param's.

  A complex param gets the complex counterpart (its moments are complex)
  unless ``real`` (for |g|² averages, which need half the memory).
  """
  param_dtype = getattr(param, "dtype", None)  # arrays, ShapeDtypeStructs
  if param_dtype is None:
    param_dtype = jnp.asarray(param).dtype
  dtype = param_dtype if requested is None else jnp.dtype(requested)
  if real:
    return real_dtype(dtype)
  if jnp.issubdtype(param_dtype, jnp.complexfloating):
    return jnp.promote_types(dtype, jnp.complex64)
  return dtype


def abs_sq(x: jax.Array) -> jax.Array:
  """|x|² elementwise, real-valued; for real x, ``x ** 2`` (optax's op)."""
  if jnp.iscomplexobj(x):
    return jnp.real(x) ** 2 + jnp.imag(x) ** 2
  return x**2


def cast(x: jax.Array, dtype) -> jax.Array:
  """``x.astype(dtype)``, but ``x`` itself when it already has ``dtype``.

  A same-dtype ``astype`` still emits a convert op; per leaf of a many-leaf
  tree such no-ops add up in tracing and XLA compile time.
  """
  return x if x.dtype == jnp.dtype(dtype) else x.astype(dtype)


@functools.partial(jax.jit, static_argnums=1, inline=True)
def clamp_above(x: jax.Array, big: Any) -> jax.Array:
  """``where(x > big, big, x)``: a select, which XLA:CPU vectorises.

  (``jnp.minimum``'s NaN propagation does not vectorise; NaN fails the
  compare and passes through.) Jitted: eagerly one kernel instead of three
  dispatches, and inlined under an outer jit. A select changes no value, so
  fusing it cannot change rounding (unlike fusing arithmetic, which would
  make eager results differ from optax's op-by-op ones).
  """
  bound = jax.lax.full_like(x, big)
  return jax.lax.select(jax.lax.gt(x, bound), bound, x)


def saturating_cast(x: jax.Array, dtype) -> jax.Array:
  """Casts ``x`` to ``dtype``, clipping to its finite range instead of ±inf.

  Only a narrowing cast clips (float32 -> float16), and only finite values:
  ±inf and NaN stay as they are, so a non-finite gradient still gives a
  non-finite update (and buffer) that ``optax.apply_if_finite`` sees, instead
  of a finite one at the dtype's largest value. Values that are already in
  range are unchanged, bit for bit.
  """
  dtype = jnp.dtype(dtype)
  if not jnp.issubdtype(dtype, jnp.inexact) or not jnp.issubdtype(
      x.dtype, jnp.inexact
  ):
    return cast(x, dtype)
  big = jnp.finfo(dtype).max
  if big >= jnp.finfo(x.dtype).max:
    return cast(x, dtype)  # not narrowing: nothing can overflow
  if jnp.iscomplexobj(x):
    re = _clip(jnp.real(x), big)
    im = _clip(jnp.imag(x), big)
    return jax.lax.complex(re, im).astype(dtype)
  return _clip(x, big).astype(dtype)


def _clip(x: jax.Array, big: Any) -> jax.Array:
  """``clip(x, -big, big)`` of finite ``x``, as selects (±inf, NaN pass)."""
  low = jax.lax.full_like(x, -big)
  clipped = clamp_above(x, big)
  clipped = jax.lax.select(jax.lax.lt(clipped, low), low, clipped)
  return jax.lax.select(jax.lax.is_finite(x), clipped, x)


def hyper(value: Any, dtype) -> Any:
  """A hyperparameter for arithmetic in ``dtype``: Python numbers as they are
  (weakly typed, they already take ``dtype``), arrays cast to it.

  An array hyperparameter (``optax.inject_hyperparams``, or float64 under
  ``jax_enable_x64``) would otherwise promote float32 state to its dtype.
  """
  if isinstance(value, (bool, int, float, complex)):
    return value
  value = jnp.asarray(value)
  if jnp.iscomplexobj(value):  # inject_hyperparams on complex params
    value = jnp.real(value)
  return cast(value, real_dtype(dtype))


def smallest_normal(dtype) -> float:
  """Smallest positive normal number of ``dtype``: a floor for denominators.

  Flushing-to-zero hardware turns a subnormal ε into 0, and ``0 · rsqrt(0)``
  is NaN; flooring at the smallest normal keeps a zero gradient's update 0.
  """
  return float(jnp.finfo(real_dtype(dtype)).tiny)
