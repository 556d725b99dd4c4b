"""`keras_rmsprop` against real Keras 3 ``keras.optimizers.RMSprop`` (JAX).

Both run the shared problem (tests/reference/problem.py) for 500 steps, each
side's gradient evaluated at its own params; Keras runs ``stateless_apply``
under ``jax.jit``. Measured deviations are in docs/porting.md: at most
3.5e-6, with weight decay, where Keras rounds the parameter twice per step
(``p - p·λ·η``, then ``- increment``) and optax once (``p + update``).
"""

import itertools

import jax
import keras
import numpy as np
import pytest

from optax_rmsprop import _presets
from optax_rmsprop import _rmsprop
from reference import keras_rmsprop as keras_reference
from reference import problem
from reference import runner
from reference import schedules

TOLERANCE = 1e-5
LR = 0.01


def keras_schedule(kind, lr=LR):
  """The Keras LearningRateSchedule equal to ``schedules.optax_schedule``."""
  if kind == "constant":
    return lr
  if kind == "drop":
    # Keras keeps values[0] while step <= boundary: one step later than optax.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [schedules.DROP_AT - 1], [lr, lr * schedules.DROP_FACTOR])
  if kind == "exponential":
    return keras.optimizers.schedules.ExponentialDecay(lr, 1, schedules.GAMMA)
  if kind == "warmup_cosine":
    return keras.optimizers.schedules.CosineDecay(
        schedules.START_FRACTION * lr, schedules.TOTAL - schedules.WARMUP,
        alpha=schedules.END_FRACTION, warmup_target=lr,
        warmup_steps=schedules.WARMUP)
  raise ValueError(kind)


def run_keras(kwargs, schedule="constant", lr=LR):
  """Flat trajectory of keras.optimizers.RMSprop via jitted stateless_apply."""
  names = list(problem.SHAPES)
  variables = [keras.Variable(problem.initial_params()[k]) for k in names]
  if lr is not None:
    kwargs = dict(kwargs, learning_rate=keras_schedule(schedule, lr))
  opt = keras.optimizers.RMSprop(**kwargs)
  opt.build(variables)
  opt_values = [v.value for v in opt.variables]
  values = [v.value for v in variables]
  apply = jax.jit(opt.stateless_apply)
  host = problem.initial_params()
  trajectory = [problem.flatten(host)]
  for t in range(problem.STEPS):
    grads = problem.gradient(host, t)
    values, opt_values = apply(opt_values, [grads[k] for k in names], values)
    host = dict(zip(names, jax.device_get(values)))
    trajectory.append(problem.flatten(host))
  return np.stack(trajectory)


def _deviation(kwargs, schedule):
  expected = run_keras(kwargs, schedule)
  tx = _presets.keras_rmsprop(
      learning_rate=schedules.optax_schedule(schedule, LR), **kwargs)
  return problem.max_relative_deviation(runner.run_optax(tx), expected)


DEFAULT_CONFIGS = [
    ({"momentum": 0.9}, "drop"),
    ({"centered": True, "epsilon": 0.1}, "constant"),
    ({"weight_decay": 0.004}, "exponential"),
    ({"momentum": 0.9, "centered": True, "weight_decay": 0.004},
     "warmup_cosine"),
    ({"momentum": 0.9, "epsilon": 0.1}, "constant"),
]

FULL_GRID = [
    ({"momentum": m, "centered": c, "weight_decay": w, "epsilon": e}, s)
    for m, c, w, e, s in itertools.product(
        [0.0, 0.9], [False, True], [None, 0.004], [1e-7, 0.1],
        schedules.KINDS)
]


@pytest.mark.parametrize("kwargs,schedule", DEFAULT_CONFIGS)
def test_matches_keras(kwargs, schedule):
  deviation = _deviation(kwargs, schedule)
  print(f"keras {kwargs} {schedule}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("kwargs,schedule", FULL_GRID)
def test_matches_keras_full_grid(kwargs, schedule):
  deviation = _deviation(kwargs, schedule)
  print(f"keras {kwargs} {schedule}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_framework_defaults_match():
  expected = run_keras({}, lr=None)  # Keras' own lr 0.001, rho 0.9, eps 1e-7
  actual = runner.run_optax(_presets.keras_rmsprop())
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"keras defaults: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_numpy_reference_matches_keras():
  kwargs = {"momentum": 0.9, "centered": True, "weight_decay": 0.004,
            "epsilon": 0.1}
  expected = run_keras(kwargs, "drop")
  reference = problem.run_reference(
      keras_reference.RMSprop(expected.shape[1], **kwargs),
      schedules.python("drop", LR))
  assert problem.max_relative_deviation(reference, expected) <= 2e-6


@pytest.mark.parametrize("kwargs,wrong", [
    # ε outside the root instead of inside.
    ({"epsilon": 0.1}, {"eps_in_sqrt": False}),
    # Weight decay as L2 on the gradient instead of decoupled.
    ({"weight_decay": 0.004},
     {"decoupled_weight_decay": None, "coupled_weight_decay": 0.004}),
])
def test_a_wrong_convention_is_caught(kwargs, wrong):
  """The comparison can fail: one changed convention is far off."""
  expected = run_keras(kwargs)
  options = dict(learning_rate=LR, decay=0.9, eps=kwargs.get("epsilon", 1e-7),
                 decoupled_weight_decay=kwargs.get("weight_decay"))
  options.update(wrong)
  actual = runner.run_optax(_rmsprop.rmsprop(**options))
  assert problem.max_relative_deviation(actual, expected) > 1e-3
