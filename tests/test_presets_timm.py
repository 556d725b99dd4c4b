"""`timm_rmsprop_tf` against a NumPy transcription of timm's RMSpropTF.

The reference (tests/reference/timm_rmsprop_tf.py) follows
timm/optim/rmsprop_tf.py op by op; both run the shared problem for 500 steps.
"""

import itertools

import numpy as np
import pytest

from optax_rmsprop import _presets
from reference import problem
from reference import runner
from reference import schedules
from reference import timm_rmsprop_tf as timm_reference

TOLERANCE = 1e-5
LR = 0.01


def _deviation(kwargs, schedule):
  size = sum(int(np.prod(s)) for s in problem.SHAPES.values())
  expected = problem.run_reference(
      timm_reference.RMSpropTF(size, **kwargs), schedules.python(schedule, LR))
  tx = _presets.timm_rmsprop_tf(
      lr=schedules.optax_schedule(schedule, LR), **kwargs)
  return problem.max_relative_deviation(runner.run_optax(tx), expected)


DEFAULT_CONFIGS = [
    ({}, "constant"),
    ({"momentum": 0.9}, "drop"),
    ({"momentum": 0.9, "lr_in_momentum": False}, "drop"),
    ({"centered": True, "eps": 0.1}, "exponential"),
    ({"weight_decay": 0.01}, "constant"),
    ({"weight_decay": 0.01, "decoupled_decay": True, "momentum": 0.9},
     "warmup_cosine"),
]

FULL_GRID = [
    ({"momentum": m, "centered": c, "weight_decay": w, "decoupled_decay": d,
      "lr_in_momentum": i, "eps": e}, s)
    for m, c, w, d, i, e, s in itertools.product(
        [0.0, 0.9], [False, True], [0.0, 0.01], [False, True], [True, False],
        [1e-10, 0.1], schedules.KINDS)
    if (w or not d) and (m or i)  # skip options that change nothing
]


@pytest.mark.parametrize("kwargs,schedule", DEFAULT_CONFIGS)
def test_matches_timm_reference(kwargs, schedule):
  deviation = _deviation(kwargs, schedule)
  print(f"timm {kwargs} {schedule}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("kwargs,schedule", FULL_GRID)
def test_matches_timm_reference_full_grid(kwargs, schedule):
  deviation = _deviation(kwargs, schedule)
  print(f"timm {kwargs} {schedule}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_decoupled_decay_is_not_coupled():
  """The two weight-decay modes give visibly different runs."""
  kwargs = {"weight_decay": 0.01, "momentum": 0.9}
  size = sum(int(np.prod(s)) for s in problem.SHAPES.values())
  expected = problem.run_reference(
      timm_reference.RMSpropTF(size, decoupled_decay=True, **kwargs), LR)
  actual = runner.run_optax(_presets.timm_rmsprop_tf(lr=LR, **kwargs))
  assert problem.max_relative_deviation(actual, expected) > 1e-3
