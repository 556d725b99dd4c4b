"""`tf1_rmsprop` against trajectories recorded with real TensorFlow.

tests/data/tf1_rmsprop.npz was written by tools/generate_tf1_reference.py
(TensorFlow 2.21 CPU, ``tf.compat.v1.train.RMSPropOptimizer``, eager) on the
shared problem; it keeps every 10th step of 500. The NumPy transcription of
TF's kernels reproduces it bit for bit; the preset, which uses the weighted
EMA form rather than TF's increment form, to a relative 2.6e-6 at worst
(centered, where ν - μ² cancels digits).
"""

import json
import pathlib

import numpy as np
import optax
import pytest

from optax_rmsprop import _presets
from optax_rmsprop import _rmsprop
from reference import problem
from reference import runner
from reference import tf1_rmsprop as tf1_reference

DATA = np.load(pathlib.Path(__file__).parent / "data" / "tf1_rmsprop.npz")
META = json.loads(str(DATA["meta"]))
CONFIGS = META["configs"]
EVERY = META["every"]
TOLERANCE = 1e-5


def optax_schedule(schedule):
  kind, lr = schedule[0], schedule[1]
  if kind == "constant":
    return lr
  if kind == "drop":
    return optax.piecewise_constant_schedule(lr, {schedule[2]: schedule[3]})
  if kind == "exponential":
    return optax.exponential_decay(lr, 1, schedule[2])
  raise ValueError(kind)


def python_schedule(schedule):
  kind, lr = schedule[0], schedule[1]
  if kind == "constant":
    return lr
  if kind == "drop":
    return lambda t: lr if t < schedule[2] else lr * schedule[3]
  if kind == "exponential":
    return lambda t: lr * schedule[2] ** t
  raise ValueError(kind)


def test_data_covers_the_configurations():
  assert META["steps"] >= 500
  assert set(CONFIGS) >= {"plain", "momentum", "centered",
                          "centered_momentum", "momentum_lr_drop"}
  for name in CONFIGS:
    assert DATA[name].shape == (META["steps"] // EVERY + 1, 50)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_tensorflow(name):
  config = CONFIGS[name]
  tx = _presets.tf1_rmsprop(optax_schedule(config["schedule"]),
                            **config["kwargs"])
  actual = runner.run_optax(tx, steps=META["steps"])[::EVERY]
  deviation = problem.max_relative_deviation(actual, DATA[name])
  print(f"tf1 {name}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_numpy_reference_matches_tensorflow(name):
  config = CONFIGS[name]
  reference = problem.run_reference(
      tf1_reference.RMSprop(50, **config["kwargs"]),
      python_schedule(config["schedule"]), steps=META["steps"])[::EVERY]
  deviation = problem.max_relative_deviation(reference, DATA[name])
  print(f"tf1 reference {name}: max rel dev {deviation:.2e}")
  # Bit-exact where recorded; the float64 libm behind the gradient may round
  # differently elsewhere.
  assert deviation <= 1e-6


def test_a_wrong_convention_is_caught():
  """PyTorch's ν₀ = 0 instead of TF1's 1 is far off the recorded data."""
  config = CONFIGS["plain"]
  tx = _rmsprop.rmsprop(config["schedule"][1], eps=1e-10, initial_scale=0.0)
  actual = runner.run_optax(tx, steps=META["steps"])[::EVERY]
  assert problem.max_relative_deviation(actual, DATA["plain"]) > 1e-3
