"""A sparse-gradient problem: an embedding table looked up a few rows a step.

Like problem.py (NumPy gradients, float32, evaluated at each side's own
parameters), but the table's gradient is row-sparse, as TF1 hands it to an
optimizer: ``tf.IndexedSlices(values, indices)`` with one row of values per
lookup, duplicates included. :func:`dense` turns it into the dense gradient
JAX would compute (duplicates summed in lookup order, as TF sums them before
its sparse update; the other rows zero).

  table: (ROWS, DIM). Each step looks up BATCH indices from the first
         USED rows (rows >= USED are never looked up), with repeats.
  w:     (3, DIM) dense. Its row 1 gets an exactly zero gradient on odd
         steps: a dense variable with a zero row, which TF still decays.

  g(lookup b of row r) = s_{t,b} * (0.5 tanh(e_r - a_r) - 1 + 0.1 cos(mean w))
  g(w)                 = s_t * (0.5 tanh(w - c) - 1 + 0.1 cos(mean e))

with fixed factors s in [0.55, 1.45]: every gradient entry is negative and
away from 0, so parameters move monotonically up from [0.5, 1.5].
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

ROWS, DIM, USED, BATCH = 16, 5, 12, 6
SHAPES = {"table": (ROWS, DIM), "w": (3, DIM)}
STEPS = 300
_SIZE = sum(int(np.prod(s)) for s in SHAPES.values())


def initial_params() -> Dict[str, np.ndarray]:
  flat = np.linspace(0.5, 1.5, _SIZE).astype(np.float32)
  return {"table": flat[: ROWS * DIM].reshape(ROWS, DIM),
          "w": flat[ROWS * DIM :].reshape(3, DIM)}


def flatten(params: Dict[str, np.ndarray]) -> np.ndarray:
  return np.concatenate([np.asarray(params[k]).ravel() for k in SHAPES])


def _noise(step: int, shape, salt: float) -> np.ndarray:
  # From a formula, not an RNG stream, so the recorded data never depends on
  # NumPy's generator.
  i = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
  return 1.0 + 0.45 * np.sin(12.9898 * (step + 1) + 78.233 * i + salt)


def indices(step: int) -> np.ndarray:
  """The rows looked up at ``step``: BATCH of the first USED, with repeats."""
  b = np.arange(BATCH, dtype=np.float64)
  frac = np.modf(np.abs(np.sin(3.7 * (step + 1) + 1.3 * b)) * 1e3)[0]
  return (frac * USED).astype(np.int32)


def gradient(params: Dict[str, np.ndarray], step: int
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(indices, table values per lookup, dense w gradient)``, float32."""
  table = np.asarray(params["table"], np.float64)
  w = np.asarray(params["w"], np.float64)
  idx = indices(step)
  targets = np.linspace(0.5, 4.0, ROWS * DIM).reshape(ROWS, DIM)
  rows = table[idx]
  g_rows = _noise(step, rows.shape, 0.0) * (
      0.5 * np.tanh(rows - targets[idx]) - 1.0 + 0.1 * np.cos(w.mean()))
  g_w = _noise(step, w.shape, 1.0) * (
      0.5 * np.tanh(w - 2.0) - 1.0 + 0.1 * np.cos(table.mean()))
  if step % 2:
    g_w[1] = 0.0
  return idx, g_rows.astype(np.float32), g_w.astype(np.float32)


def dense(idx: np.ndarray, values: np.ndarray) -> np.ndarray:
  """The dense table gradient: lookups of one row summed in order."""
  out = np.zeros((ROWS, DIM), np.float32)
  np.add.at(out, idx, values)
  return out
