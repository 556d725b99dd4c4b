"""Records real TF1 RMSprop trajectories for tests/test_presets_tf1.py.

``tf.compat.v1.train.RMSPropOptimizer`` runs the shared test problem
(tests/reference/problem.py: the float32 NumPy gradient evaluated at TF's own
current parameters) for 500 steps per configuration, and every 10th step's
parameters are written to tests/data/tf1_rmsprop.npz with the configurations
as JSON.

Sparse updates: the same optimizer runs tests/reference/embedding_problem.py,
an embedding table whose gradient is a ``tf.IndexedSlices`` (one row per
lookup, duplicates included) next to a dense variable, for 300 steps; every
5th step's parameters and the final slots (rms, momentum, mg) go to
tests/data/tf1_rmsprop_sparse.npz, with one step where a looked-up row's
gradient is exactly zero (``zero_lookup_*``: TF updates that row).

TensorFlow is not a project dependency; run this in its own venv:

  python3 -m venv /tmp/tfvenv
  /tmp/tfvenv/bin/pip install tensorflow-cpu numpy
  /tmp/tfvenv/bin/python tools/generate_tf1_reference.py
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from reference import embedding_problem  # pylint: disable=g-import-not-at-top
from reference import problem  # pylint: disable=g-import-not-at-top

OUTPUT = ROOT / "tests" / "data" / "tf1_rmsprop.npz"
EVERY = 10  # keep every 10th step: 51 x 50 float32 per configuration
SPARSE_OUTPUT = ROOT / "tests" / "data" / "tf1_rmsprop_sparse.npz"
SPARSE_EVERY = 5  # 61 x 95 float32 per configuration

# name -> RMSPropOptimizer kwargs (without learning_rate) and an lr schedule.
CONFIGS = {
    "plain": dict(kwargs={}, schedule=["constant", 0.01]),
    "momentum": dict(kwargs={"momentum": 0.9}, schedule=["constant", 0.01]),
    "centered": dict(kwargs={"centered": True}, schedule=["constant", 0.01]),
    "centered_momentum": dict(
        kwargs={"centered": True, "momentum": 0.9},
        schedule=["constant", 0.01],
    ),
    # An lr drop with momentum: TF keeps lr inside the buffer.
    "momentum_lr_drop": dict(
        kwargs={"momentum": 0.9}, schedule=["drop", 0.01, 250, 0.1]
    ),
    # A large epsilon (inside the root) and a decayed lr.
    "exponential_eps": dict(
        kwargs={"decay": 0.95, "epsilon": 0.1},
        schedule=["exponential", 0.01, 0.995],
    ),
}


SPARSE_CONFIGS = {
    "plain": dict(kwargs={}, schedule=["constant", 0.01]),
    "momentum": dict(kwargs={"momentum": 0.9}, schedule=["constant", 0.01]),
    "centered": dict(kwargs={"centered": True}, schedule=["constant", 0.01]),
    "centered_momentum": dict(
        kwargs={"centered": True, "momentum": 0.9},
        schedule=["constant", 0.01],
    ),
    "momentum_lr_drop": dict(
        kwargs={"momentum": 0.9, "decay": 0.95, "epsilon": 1e-3},
        schedule=["drop", 0.01, 150, 0.1],
    ),
}


def lr_of_step(schedule, step: int) -> float:
  """The lr of update ``step`` (from 0), as a Python float."""
  kind, lr = schedule[0], schedule[1]
  if kind == "constant":
    return lr
  if kind == "drop":
    boundary, factor = schedule[2], schedule[3]
    return lr if step < boundary else lr * factor
  if kind == "exponential":
    return lr * schedule[2] ** step
  raise ValueError(f"unknown schedule {kind}")


def run(config) -> np.ndarray:
  p0 = problem.initial_params()
  variables = {k: tf.Variable(v) for k, v in p0.items()}
  step = [0]
  optimizer = tf.compat.v1.train.RMSPropOptimizer(
      learning_rate=lambda: lr_of_step(config["schedule"], step[0]),
      **config["kwargs"],
  )
  trajectory = [problem.flatten(p0)]
  for t in range(problem.STEPS):
    host = {k: v.numpy() for k, v in variables.items()}
    grads = problem.gradient(host, t)
    optimizer.apply_gradients(
        [(tf.constant(grads[k]), variables[k]) for k in problem.SHAPES]
    )
    step[0] += 1
    host = {k: v.numpy() for k, v in variables.items()}
    trajectory.append(problem.flatten(host))
  return np.stack(trajectory)[::EVERY]


def run_sparse(config):
  """Trajectory (every SPARSE_EVERY-th step) and final slots, sparse table."""
  p0 = embedding_problem.initial_params()
  variables = {k: tf.Variable(v) for k, v in p0.items()}
  step = [0]
  optimizer = tf.compat.v1.train.RMSPropOptimizer(
      learning_rate=lambda: lr_of_step(config["schedule"], step[0]),
      **config["kwargs"],
  )
  dense_shape = tf.constant(embedding_problem.SHAPES["table"], tf.int64)
  trajectory = [embedding_problem.flatten(p0)]
  for t in range(embedding_problem.STEPS):
    host = {k: v.numpy() for k, v in variables.items()}
    indices, values, g_w = embedding_problem.gradient(host, t)
    table_grad = tf.IndexedSlices(
        tf.constant(values), tf.constant(indices), dense_shape)
    optimizer.apply_gradients([(table_grad, variables["table"]),
                               (tf.constant(g_w), variables["w"])])
    step[0] += 1
    host = {k: v.numpy() for k, v in variables.items()}
    trajectory.append(embedding_problem.flatten(host))
  slots = {}
  for slot in optimizer.get_slot_names():
    slots[slot] = embedding_problem.flatten(
        {k: optimizer.get_slot(v, slot).numpy() for k, v in variables.items()})
  return np.stack(trajectory)[::SPARSE_EVERY], slots


def run_zero_lookup():
  """One step where row 13 is looked up with an exactly zero gradient."""
  table = tf.Variable(embedding_problem.initial_params()["table"])
  optimizer = tf.compat.v1.train.RMSPropOptimizer(0.01, momentum=0.9)
  values = np.zeros((2, embedding_problem.DIM), np.float32)
  values[0] = -1.0
  grad = tf.IndexedSlices(tf.constant(values), tf.constant([0, 13]),
                          tf.constant(embedding_problem.SHAPES["table"]))
  optimizer.apply_gradients([(grad, table)])
  return {"zero_lookup_table": table.numpy(),
          "zero_lookup_rms": optimizer.get_slot(table, "rms").numpy()}


def main_sparse():
  arrays = {}
  for name, config in SPARSE_CONFIGS.items():
    arrays[name], slots = run_sparse(config)
    for slot, value in slots.items():
      arrays[f"{name}_{slot}"] = value
  arrays.update(run_zero_lookup())
  meta = {
      "configs": SPARSE_CONFIGS,
      "every": SPARSE_EVERY,
      "steps": embedding_problem.STEPS,
      "tensorflow": tf.__version__,
      "numpy": np.__version__,
  }
  np.savez_compressed(SPARSE_OUTPUT, meta=np.array(json.dumps(meta)), **arrays)
  print(f"wrote {SPARSE_OUTPUT} ({SPARSE_OUTPUT.stat().st_size} bytes)")


def main():
  main_sparse()
  arrays = {name: run(config) for name, config in CONFIGS.items()}
  meta = {
      "configs": CONFIGS,
      "every": EVERY,
      "steps": problem.STEPS,
      "tensorflow": tf.__version__,
      "numpy": np.__version__,
  }
  OUTPUT.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(OUTPUT, meta=np.array(json.dumps(meta)), **arrays)
  for name, array in arrays.items():
    print(f"{name}: {array.shape}, final params in"
          f" [{array[-1].min():.4f}, {array[-1].max():.4f}]")
  print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes), TF {tf.__version__}")


if __name__ == "__main__":
  main()
