"""The lr schedules the parity tests use, as Python functions and optax.

``python(kind, lr)(t)`` is the lr of update ``t`` (from 0) in float64, what a
framework scheduler stepped after each update produces; ``optax_schedule``
is the optax schedule a user porting that run would write.
"""

from __future__ import annotations

import math

import optax

KINDS = ("constant", "drop", "exponential", "warmup_cosine")
DROP_AT, DROP_FACTOR = 250, 0.1  # lr x 0.1 from update 250 on
GAMMA = 0.995  # exponential decay per update
WARMUP, TOTAL, END_FRACTION, START_FRACTION = 50, 500, 0.05, 0.1


def python(kind: str, lr: float):
  if kind == "constant":
    return lambda t: lr
  if kind == "drop":
    return lambda t: lr if t < DROP_AT else lr * DROP_FACTOR
  if kind == "exponential":
    return lambda t: lr * GAMMA**t
  if kind == "warmup_cosine":
    def warmup_cosine(t):
      if t < WARMUP:
        start = START_FRACTION * lr
        return start + (lr - start) * t / WARMUP
      frac = min(t - WARMUP, TOTAL - WARMUP) / (TOTAL - WARMUP)
      return lr * ((1 - END_FRACTION) * 0.5 * (1 + math.cos(math.pi * frac))
                   + END_FRACTION)
    return warmup_cosine
  raise ValueError(kind)


def optax_schedule(kind: str, lr: float):
  if kind == "constant":
    return lr
  if kind == "drop":
    return optax.piecewise_constant_schedule(lr, {DROP_AT: DROP_FACTOR})
  if kind == "exponential":
    return optax.exponential_decay(lr, 1, GAMMA)
  if kind == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        START_FRACTION * lr, lr, WARMUP, TOTAL, END_FRACTION * lr)
  raise ValueError(kind)
