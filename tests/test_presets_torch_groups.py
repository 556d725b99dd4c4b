"""`torch_param_groups` against real ``torch.optim.RMSprop`` param groups.

The shared problem's two leaves are two groups: ``w`` (weights, decayed) and
``b`` (biases, not decayed), as torchvision's classification recipe splits
them, with every other hyperparameter different between the groups too.
"""

import functools

import jax
import numpy as np
import optax
import pytest
import torch

import optax_rmsprop
from reference import problem
from reference import torch_runs

TOLERANCE = 1e-5  # as test_presets_torch.py: centered rounding is 6.7e-6
GAMMA = 0.995

GROUPS = {
    "w": {"lr": 0.01, "weight_decay": 0.01, "momentum": 0.9, "centered": True},
    "b": {"lr": 0.03, "weight_decay": 0.0, "momentum": 0.5, "alpha": 0.9,
          "eps": 0.1},
}
LABELS = {"b": "b", "w": "w"}


def _torch_run(groups, defaults, steps=problem.STEPS, scheduler=None):
  params = torch_runs.torch_params()
  opt = torch.optim.RMSprop(
      [{"params": [params[name]], **kwargs} for name, kwargs in groups.items()],
      **defaults)
  return torch_runs.train_torch(
      opt, params, steps,
      scheduler=None if scheduler is None else scheduler(opt))


def _optax_run(tx, steps=problem.STEPS):
  params = problem.initial_params()
  return torch_runs.train_optax(tx, params, tx.init(params), steps)[2]


@functools.lru_cache(maxsize=None)
def _torch_groups_run():
  return _torch_run(GROUPS, {})


def test_two_groups_match_torch():
  expected = _torch_groups_run()
  tx = optax_rmsprop.torch.torch_param_groups(GROUPS, LABELS)
  deviation = problem.max_relative_deviation(_optax_run(tx), expected)
  print(f"torch two groups: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_two_groups_with_a_scheduler_and_defaults_match_torch():
  """A scheduler scales each group's own lr; defaults fill what groups omit."""
  groups = {name: {k: v for k, v in kwargs.items() if k != "momentum"}
            for name, kwargs in GROUPS.items()}
  expected = _torch_run(
      groups, {"momentum": 0.9},
      scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, GAMMA))
  tx = optax_rmsprop.torch.torch_param_groups(
      {name: {**kwargs, "lr": optax.exponential_decay(kwargs["lr"], 1, GAMMA)}
       for name, kwargs in groups.items()},
      lambda params: {k: k for k in params}, momentum=0.9)
  deviation = problem.max_relative_deviation(_optax_run(tx), expected)
  print(f"torch two groups, ExponentialLR: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_a_sequence_of_groups_is_labelled_by_index():
  expected = _torch_run(GROUPS, {}, steps=100)
  tx = optax_rmsprop.torch.torch_param_groups(
      [GROUPS["w"], GROUPS["b"]], {"w": 0, "b": 1})
  assert problem.max_relative_deviation(_optax_run(tx, 100),
                                        expected) <= TOLERANCE


def test_ignoring_the_groups_is_caught():
  """One preset for both leaves (decay on the biases too) is far off."""
  expected = _torch_groups_run()
  tx = optax_rmsprop.torch_rmsprop(**GROUPS["w"])
  assert problem.max_relative_deviation(_optax_run(tx), expected) > 1e-3


def test_state_holds_each_groups_buffers_only_for_its_leaves():
  params = problem.initial_params()
  tx = optax_rmsprop.torch.torch_param_groups(
      {"w": {"centered": True}, "b": {"momentum": 0.9}}, LABELS)
  arrays = [x.shape for x in jax.tree.leaves(tx.init(params))
            if np.ndim(x) > 0]
  # w: square_avg and grad_avg; b: square_avg and momentum_buffer.
  assert sorted(arrays) == sorted([(6, 7), (6, 7), (8,), (8,)])


def test_params_in_a_group_is_an_error():
  with pytest.raises(ValueError, match="'params'.*labels"):
    optax_rmsprop.torch.torch_param_groups([{"params": [], "lr": 0.1}], {"w": 0})


def test_no_groups_is_an_error():
  with pytest.raises(ValueError, match="groups is empty"):
    optax_rmsprop.torch.torch_param_groups([], {})


def test_a_bad_group_hyperparameter_is_named():
  with pytest.raises(ValueError, match="^weight_decay must be"):
    optax_rmsprop.torch.torch_param_groups([{"weight_decay": -1.0}], {"w": 0})


def test_a_groups_own_value_wins_over_the_shared_default():
  """As in PyTorch, the keyword arguments only fill what a group omits: each
  group's own lr and momentum win over the shared ones, and the shared alpha
  reaches the group that has none ("w")."""
  defaults = {"lr": 0.5, "alpha": 0.5, "momentum": 0.1}
  expected = _torch_run(GROUPS, defaults, steps=100)
  tx = optax_rmsprop.torch.torch_param_groups(GROUPS, LABELS, **defaults)
  assert problem.max_relative_deviation(_optax_run(tx, 100),
                                        expected) <= TOLERANCE


def test_a_label_naming_no_group_is_named():
  tx = optax_rmsprop.torch.torch_param_groups(GROUPS, {"w": "w", "b": "bias"})
  with pytest.raises(ValueError, match="'bias'.*name no group"):
    tx.init(problem.initial_params())


def test_a_labels_function_is_called_on_the_params_so_a_frozen_param_stays_put():
  """A labels function of the params labels a frozen param (None gradient)
  from its param, not from its None gradient: its update is None, its state
  does not move, and the other group steps as without it."""
  params = problem.initial_params()
  labels = lambda p: jax.tree.map(lambda x: "w" if x.ndim == 2 else "b", p)
  tx = optax_rmsprop.torch.torch_param_groups(GROUPS, labels)
  state = tx.init(params)
  grads = {"w": jax.numpy.ones_like(params["w"]), "b": None}
  updates, new_state = tx.update(grads, state, params)
  assert updates["b"] is None
  for a, e in zip(jax.tree.leaves(new_state.inner_states["b"]),
                  jax.tree.leaves(state.inner_states["b"])):
    np.testing.assert_array_equal(a, e)
  alone = optax_rmsprop.torch_rmsprop(**GROUPS["w"])
  expected, _ = alone.update({"w": grads["w"]}, alone.init({"w": params["w"]}),
                             {"w": params["w"]})
  np.testing.assert_array_equal(updates["w"], expected["w"])
