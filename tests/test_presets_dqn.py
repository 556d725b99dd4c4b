"""`dqn_rmsprop` against a NumPy transcription of the Nature-DQN Lua update.

The reference (tests/reference/dqn_rmsprop.py) follows
dqn/NeuralQLearner.lua, ``nql:qLearnMinibatch``; both run the shared problem
for 500 steps.
"""

import numpy as np
import optax
import pytest

import optax_rmsprop
from reference import dqn_rmsprop as dqn_reference
from reference import problem
from reference import runner

TOLERANCE = 1e-5
SIZE = sum(int(np.prod(s)) for s in problem.SHAPES.values())


def lua_linear_lr(lr_start, lr_end, lr_endt):
  """The Lua annealing, t = numSteps - learn_start counted from 0."""
  return lambda t: max(
      (lr_start - lr_end) * (lr_endt - t) / lr_endt + lr_end, lr_end)


@pytest.mark.parametrize("kwargs,lua_lr,optax_lr", [
    ({}, 0.00025, 0.00025),  # the published settings
    ({"weight_cost": 0.01}, 0.01, 0.01),
    ({"decay": 0.9, "eps": 0.1}, 0.01, 0.01),
    ({}, lua_linear_lr(0.01, 0.001, 400),
     optax.linear_schedule(0.01, 0.001, 400)),
], ids=["published", "weight_cost", "decay_eps", "linear_annealing"])
def test_matches_dqn_reference(kwargs, lua_lr, optax_lr):
  expected = problem.run_reference(
      dqn_reference.DqnRMSprop(SIZE, **kwargs), lua_lr)
  actual = runner.run_optax(optax_rmsprop.dqn_rmsprop(optax_lr, **kwargs))
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"dqn {kwargs}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_differs_from_dopamine_tf1_setting():
  """ν₀ = 0 (Lua) is not TF1's ν₀ = 1, which Dopamine's port uses."""
  expected = problem.run_reference(dqn_reference.DqnRMSprop(SIZE), 0.01)
  actual = runner.run_optax(
      optax_rmsprop.tf1_rmsprop(0.01, decay=0.95, epsilon=0.01, centered=True))
  assert problem.max_relative_deviation(actual, expected) > 1e-3
