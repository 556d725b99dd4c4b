"""`torch_rmsprop` against real ``torch.optim.RMSprop`` (torch 2.13, CPU).

Both run the shared problem (tests/reference/problem.py): each side's
gradient is the NumPy one at its own current params, so any difference
compounds over the 500 steps. Deviations measured on the author's machine
(x86-64 CPU) are listed in docs/porting.md; the tolerance sits above the
worst of them (6.7e-6, centered: torch averages the mean gradient with
``lerp``, the core with the weighted form) and far below what any convention
error gives (>1e-3, see ``test_a_wrong_convention_is_caught``).
"""

import itertools

import jax
import numpy as np
import optax
import pytest
import torch

from optax_rmsprop import _presets
from optax_rmsprop import _rmsprop
from reference import problem
from reference import runner
from reference import schedules
from reference import torch_rmsprop as torch_reference

TOLERANCE = 1e-5
LR = 0.01


def run_torch(kwargs, schedule="constant", sign=1.0, lr=LR):
  """Flat trajectory of torch.optim.RMSprop; the scheduler steps per update."""
  params = {k: torch.tensor(v) for k, v in problem.initial_params().items()}
  opt = torch.optim.RMSprop(list(params.values()), lr=lr, **kwargs)
  scheduler = None
  if schedule == "exponential":
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, schedules.GAMMA)
  elif schedule == "warmup_cosine":
    factor = schedules.python(schedule, lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: factor(t) / lr)
  trajectory = [problem.flatten(problem.initial_params())]
  for t in range(problem.STEPS):
    grads = problem.gradient({k: p.numpy() for k, p in params.items()}, t, sign)
    for k, p in params.items():
      p.grad = torch.from_numpy(grads[k])
    opt.step()
    if scheduler is not None:
      scheduler.step()
    if schedule == "drop" and t + 1 == schedules.DROP_AT:
      for group in opt.param_groups:  # a manual change, between updates
        group["lr"] = lr * schedules.DROP_FACTOR
    trajectory.append(
        problem.flatten({k: p.numpy() for k, p in params.items()}))
  return np.stack(trajectory)


def _deviation(kwargs, schedule):
  sign = -1.0 if kwargs.get("maximize") else 1.0  # same descent direction
  expected = run_torch(kwargs, schedule, sign)
  tx = _presets.torch_rmsprop(
      lr=schedules.optax_schedule(schedule, LR), **kwargs)
  return problem.max_relative_deviation(runner.run_optax(tx, sign=sign),
                                        expected)


DEFAULT_CONFIGS = [
    ({}, "constant"),
    ({"momentum": 0.9}, "drop"),
    ({"momentum": 0.9}, "exponential"),
    ({"centered": True}, "constant"),
    ({"centered": True, "momentum": 0.9}, "warmup_cosine"),
    ({"weight_decay": 0.01, "maximize": True}, "constant"),
    ({"eps": 0.1}, "constant"),
    ({"eps": 0.1, "centered": True, "momentum": 0.9, "weight_decay": 0.01,
      "maximize": True}, "drop"),
]

FULL_GRID = [
    ({"momentum": m, "centered": c, "weight_decay": w, "maximize": x,
      "eps": e}, s)
    for m, c, w, x, e, s in itertools.product(
        [0.0, 0.9], [False, True], [0.0, 0.01], [False, True], [1e-8, 0.1],
        schedules.KINDS)
]


@pytest.mark.parametrize("kwargs,schedule", DEFAULT_CONFIGS)
def test_matches_torch(kwargs, schedule):
  deviation = _deviation(kwargs, schedule)
  print(f"torch {kwargs} {schedule}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("kwargs,schedule", FULL_GRID)
def test_matches_torch_full_grid(kwargs, schedule):
  deviation = _deviation(kwargs, schedule)
  print(f"torch {kwargs} {schedule}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_framework_defaults_match():
  expected = run_torch({}, lr=0.01)  # torch's default lr is 0.01 too
  actual = runner.run_optax(_presets.torch_rmsprop())
  assert problem.max_relative_deviation(actual, expected) <= TOLERANCE


@pytest.mark.parametrize("kwargs,schedule", [
    ({"centered": True, "momentum": 0.9, "eps": 0.1}, "drop"),
    ({"weight_decay": 0.01, "maximize": True}, "warmup_cosine"),
])
def test_numpy_reference_matches_torch(kwargs, schedule):
  # The reference transcribes torch's op order, so it agrees more closely.
  sign = -1.0 if kwargs.get("maximize") else 1.0
  expected = run_torch(kwargs, schedule, sign)
  reference = problem.run_reference(
      torch_reference.RMSprop(expected.shape[1], **kwargs),
      schedules.python(schedule, LR), sign=sign)
  assert problem.max_relative_deviation(reference, expected) <= 2e-6


@pytest.mark.parametrize("kwargs,schedule,wrong", [
    # ε inside the root instead of outside.
    ({"eps": 0.1}, "constant", {"eps_in_sqrt": True}),
    # lr inside the momentum buffer: differs once the lr changes.
    ({"momentum": 0.9}, "drop", {"lr_in_momentum": True}),
    # TF1's ν₀ = 1 instead of 0.
    ({}, "constant", {"initial_scale": 1.0}),
])
def test_a_wrong_convention_is_caught(kwargs, schedule, wrong):
  """The comparison can fail: one changed convention is far off."""
  expected = run_torch(kwargs, schedule)
  options = dict(
      learning_rate=schedules.optax_schedule(schedule, LR), decay=0.99,
      eps=kwargs.get("eps", 1e-8), eps_in_sqrt=False,
      momentum=kwargs.get("momentum"), lr_in_momentum=False)
  options.update(wrong)
  actual = runner.run_optax(_rmsprop.rmsprop(**options))
  assert problem.max_relative_deviation(actual, expected) > 1e-3


@pytest.mark.parametrize("kwargs", [
    {}, {"momentum": 0.9}, {"centered": True},
    {"momentum": 0.5, "centered": True}])
def test_state_has_the_same_buffers_as_torch(kwargs):
  """A momentum buffer exists only for momentum > 0, as in torch."""
  params = problem.initial_params()
  torch_params = [torch.tensor(v) for v in params.values()]
  opt = torch.optim.RMSprop(torch_params, **kwargs)
  for p in torch_params:
    p.grad = torch.ones_like(p)
  opt.step()
  torch_buffers = sum(
      1 for state in opt.state.values() for name in state if name != "step")
  state = _presets.torch_rmsprop(**kwargs).init(params)
  buffers = [x for x in jax.tree.leaves(state) if np.ndim(x) > 0]
  assert len(buffers) == torch_buffers
