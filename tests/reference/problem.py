"""The problem every preset trajectory test runs: NumPy gradients, float32.

Both sides of a comparison (a real framework or a NumPy reference, and the
optax preset) get their gradient from :func:`gradient` evaluated at their
*own* current parameters, so any difference compounds over the trajectory.

The gradient is that of a fixed non-quadratic loss, multiplied per step and
element by a fixed factor in [0.55, 1.45] (minibatch-like noise, so that the
centered variance estimate is not ~0):

  L(p) = sum_i [0.5 log cosh(p_i - a_i) - p_i] + 0.1 n sin(mean(p))
  g_i  = s_{t,i} * (0.5 tanh(p_i - a_i) - 1 + 0.1 cos(mean(p)))

Every g_i lies in [-2.4, -0.2]: it never changes sign, so parameters move
monotonically up from [0.5, 1.5] and stay away from 0 (relative deviations
are meaningful), and RMSprop never enters the chaotic regime near a sign
change, where any two correct float32 implementations drift apart. Computed
in float64 from the float32 params and rounded once, so the numbers do not
depend on a platform's float32 libm.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

SHAPES = {"b": (8,), "w": (6, 7)}  # two leaves, 50 elements
STEPS = 500
_SIZE = sum(int(np.prod(s)) for s in SHAPES.values())


def initial_params() -> Dict[str, np.ndarray]:
  flat = np.linspace(0.5, 1.5, _SIZE)
  return _split(flat.astype(np.float32))


def _split(flat: np.ndarray) -> Dict[str, np.ndarray]:
  out, start = {}, 0
  for name, shape in SHAPES.items():
    size = int(np.prod(shape))
    out[name] = flat[start : start + size].reshape(shape)
    start += size
  return out


def flatten(params: Dict[str, np.ndarray]) -> np.ndarray:
  return np.concatenate([np.asarray(params[k]).ravel() for k in SHAPES])


_TARGETS = np.linspace(0.5, 4.0, _SIZE)


def _noise(step: int) -> np.ndarray:
  # A fixed pseudo-random factor per (step, element), from a formula rather
  # than an RNG stream so the checked-in TF1 data never depends on NumPy's RNG.
  i = np.arange(_SIZE, dtype=np.float64)
  return 1.0 + 0.45 * np.sin(12.9898 * (step + 1) + 78.233 * i)


def gradient(params: Dict[str, np.ndarray], step: int, sign: float = 1.0):
  """float32 gradient at ``params`` for update number ``step`` (from 0).

  ``sign=-1`` gives the gradient of -L, for optimizers told to maximize.
  """
  p = flatten(params).astype(np.float64)
  g = 0.5 * np.tanh(p - _TARGETS) - 1.0 + 0.1 * np.cos(np.mean(p))
  return _split((sign * _noise(step) * g).astype(np.float32))


def max_relative_deviation(actual: np.ndarray, desired: np.ndarray) -> float:
  """max |actual - desired| / |desired| over all steps and elements.

  Params stay >= 0.4 on this problem, so no floor is needed.
  """
  actual = np.asarray(actual, np.float64)
  desired = np.asarray(desired, np.float64)
  return float(np.max(np.abs(actual - desired) / np.abs(desired)))


def run_reference(opt, lr, steps: int = STEPS, sign: float = 1.0):
  """Flat parameter trajectory, shape (steps + 1, n), of a NumPy reference.

  ``opt.step(p, g, lr_t)`` is one of the reference optimizers; ``lr`` a float
  or a function of the update number (from 0).
  """
  p = flatten(initial_params())
  trajectory = [p]
  for t in range(steps):
    g = flatten(gradient(_split(p), t, sign))
    p = opt.step(p, g, lr(t) if callable(lr) else lr)
    trajectory.append(p)
  return np.stack(trajectory)
