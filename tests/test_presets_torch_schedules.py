"""PyTorch lr schedulers and training-loop idioms, ported as docs/porting.md
says, against the real ``torch.optim.lr_scheduler`` (torch 2.13).

An optax schedule is called with the update count ``k`` (from 0); torch's
lr for update ``k`` is ``optimizer.param_groups[0]["lr"]`` just before its
``k``-th ``step()``, with the scheduler stepped after every update or after
every ``S`` updates (once per epoch). Each expression below is the one the
porting guide gives, compared over the whole run.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler

import optax_rmsprop
from reference import problem
from reference import torch_runs

LR = 0.1
S = 7  # updates per epoch, for epoch-stepped schedulers


def torch_lrs(make_scheduler, steps, steps_per_epoch=1, lr=LR):
  """torch's (lr, momentum) of each update, shape (steps,) each."""
  p = torch.zeros(1)
  opt = torch.optim.RMSprop([p], lr=lr)
  scheduler = make_scheduler(opt)
  lrs, momenta = [], []
  with warnings.catch_warnings():  # "step() before optimizer.step()"
    warnings.simplefilter("ignore")
    for k in range(steps):
      lrs.append(opt.param_groups[0]["lr"])
      momenta.append(opt.param_groups[0]["momentum"])
      p.grad = torch.zeros(1)
      opt.step()
      if (k + 1) % steps_per_epoch == 0:
        scheduler.step()
  return np.array(lrs), np.array(momenta)


def optax_values(schedule, steps):
  return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(steps)), np.float64)


def max_relative(actual, expected):
  return float(np.max(np.abs(actual - expected) / np.abs(expected)))


_warmup = optax.linear_schedule(0.01 * LR, LR, 5)  # LinearLR(0.01, 1, 5)

# (torch scheduler, steps, steps per epoch, optax schedule, tolerance). The
# tolerances sit above the float32 rounding of optax's schedule formulas
# (torch computes in float64): largest where a value cancels digits, e.g.
# the 100x LinearLR warm-up's start (2e-6) or a cosine's small end (1.4e-5).
SCHEDULES = {
    "StepLR per update": (
        lambda opt: lr_scheduler.StepLR(opt, step_size=30, gamma=0.1), 200, 1,
        optax.exponential_decay(LR, 30, 0.1, staircase=True), 1e-6),
    "StepLR per epoch": (
        lambda opt: lr_scheduler.StepLR(opt, step_size=2, gamma=0.973),
        50 * S, S,
        optax.exponential_decay(LR, 2 * S, 0.973, staircase=True), 1e-6),
    "MultiStepLR per epoch": (
        lambda opt: lr_scheduler.MultiStepLR(opt, [3, 8], gamma=0.1), 12 * S,
        S, optax.piecewise_constant_schedule(LR, {3 * S: 0.1, 8 * S: 0.1}),
        1e-6),
    "ExponentialLR per update": (
        lambda opt: lr_scheduler.ExponentialLR(opt, gamma=0.99), 300, 1,
        optax.exponential_decay(LR, 1, 0.99), 3e-6),
    "ExponentialLR per epoch": (
        lambda opt: lr_scheduler.ExponentialLR(opt, gamma=0.9), 30 * S, S,
        optax.exponential_decay(LR, S, 0.9, staircase=True), 3e-6),
    "LinearLR per update": (
        lambda opt: lr_scheduler.LinearLR(opt, 0.01, 1.0, total_iters=50), 100,
        1, optax.linear_schedule(0.01 * LR, LR, 50), 5e-6),
    "LinearLR per epoch": (
        lambda opt: lr_scheduler.LinearLR(opt, 0.01, 1.0, total_iters=5),
        10 * S, S, lambda count: _warmup(count // S), 5e-6),
    "ConstantLR per epoch": (
        lambda opt: lr_scheduler.ConstantLR(opt, factor=0.01, total_iters=5),
        10 * S, S, optax.piecewise_constant_schedule(0.01 * LR, {5 * S: 100.0}),
        1e-6),
    "CosineAnnealingLR per update": (
        lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=100,
                                                   eta_min=1e-3),
        100, 1, optax.cosine_decay_schedule(LR, 100, alpha=1e-3 / LR), 5e-6),
    "CosineAnnealingLR past T_max": (
        lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=100,
                                                   eta_min=1e-3),
        300, 1,
        lambda count: 1e-3 + (LR - 1e-3) * (1 + jnp.cos(jnp.pi * count / 100))
        / 2, 2e-5),
    "SequentialLR warm-up + StepLR per epoch (torchvision)": (
        lambda opt: lr_scheduler.SequentialLR(opt, [
            lr_scheduler.LinearLR(opt, 0.01, 1.0, total_iters=5),
            lr_scheduler.StepLR(opt, step_size=2, gamma=0.973)],
            milestones=[5]),
        40 * S, S,
        optax.join_schedules([
            lambda count: _warmup(count // S),
            optax.exponential_decay(LR, 2 * S, 0.973, staircase=True)],
            [5 * S]), 5e-6),
    "SequentialLR warm-up + cosine per update": (
        lambda opt: lr_scheduler.SequentialLR(opt, [
            lr_scheduler.LinearLR(opt, 0.1, 1.0, total_iters=50),
            lr_scheduler.CosineAnnealingLR(opt, T_max=450, eta_min=1e-4)],
            milestones=[50]),
        500, 1, optax.warmup_cosine_decay_schedule(0.1 * LR, LR, 50, 500, 1e-4),
        5e-5),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_torch(name):
  make, steps, per_epoch, schedule, tolerance = SCHEDULES[name]
  expected, _ = torch_lrs(make, steps, per_epoch)
  deviation = max_relative(optax_values(schedule, steps), expected)
  print(f"{name}: max rel dev {deviation:.2e}")
  assert deviation <= tolerance


def test_the_issues_epoch_stepped_steplr():
  """StepLR(step_size=2, gamma=0.973) stepped per epoch of 16 updates, lr
  0.01: update 119 is in epoch 7, after 3 decays."""
  make = lambda opt: lr_scheduler.StepLR(opt, step_size=2, gamma=0.973)
  expected, _ = torch_lrs(make, 120, steps_per_epoch=16, lr=0.01)
  right = optax.exponential_decay(0.01, 2 * 16, 0.973, staircase=True)
  wrong = optax.exponential_decay(0.01, 2, 0.973, staircase=True)
  assert round(expected[119], 5) == 0.00921
  assert round(float(right(119)), 5) == 0.00921
  assert round(float(wrong(119)), 5) == 0.00199


def test_stepping_per_update_instead_of_per_epoch_is_caught():
  make, steps, _, schedule, _ = SCHEDULES["StepLR per epoch"]
  expected, _ = torch_lrs(make, steps, steps_per_epoch=1)
  assert max_relative(optax_values(schedule, steps), expected) > 0.1


# --- OneCycleLR ----------------------------------------------------------------

ONECYCLE = [
    {"total_steps": 100},
    {"total_steps": 105},  # pct_start * total_steps not an integer
    {"total_steps": 1000, "pct_start": 0.25, "div_factor": 10.0},
    {"total_steps": 100, "three_phase": True},
    {"total_steps": 100, "anneal_strategy": "linear"},
    {"epochs": 10, "steps_per_epoch": 13, "three_phase": True,
     "anneal_strategy": "linear", "base_momentum": 0.8, "max_momentum": 0.9},
]


@pytest.mark.parametrize("kwargs", ONECYCLE, ids=str)
def test_onecycle_lr_and_momentum_match_torch(kwargs):
  steps = kwargs.get("total_steps") or kwargs["epochs"] * kwargs[
      "steps_per_epoch"]
  lrs, momenta = torch_lrs(
      lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=LR, **kwargs), steps)
  schedules = optax_rmsprop.torch.torch_onecycle_schedules(LR, **kwargs)
  lr_deviation = max_relative(optax_values(schedules.lr, steps), lrs)
  momentum_deviation = max_relative(
      optax_values(schedules.momentum, steps), momenta)
  print(f"OneCycleLR {kwargs}: lr {lr_deviation:.2e}, momentum"
        f" {momentum_deviation:.2e}")
  assert lr_deviation <= 5e-6
  assert momentum_deviation <= 1e-6


def test_onecycle_holds_its_end_values_after_the_cycle():
  schedules = optax_rmsprop.torch.torch_onecycle_schedules(LR, total_steps=100)
  assert float(schedules.lr(150)) == pytest.approx(LR / 25 / 1e4, rel=1e-6)
  assert float(schedules.momentum(150)) == pytest.approx(0.95, rel=1e-6)


def test_optax_onecycle_is_not_torchs():
  """Why the helper exists: optax's phases end one update later."""
  lrs, _ = torch_lrs(
      lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=100),
      100)
  theirs = optax_values(optax.cosine_onecycle_schedule(100, LR), 100)
  assert max_relative(theirs, lrs) > 1e-2


def test_onecycle_without_momentum_cycling():
  lrs, momenta = torch_lrs(
      lambda opt: lr_scheduler.OneCycleLR(
          opt, max_lr=LR, total_steps=50, cycle_momentum=False), 50)
  schedules = optax_rmsprop.torch.torch_onecycle_schedules(
      LR, total_steps=50, cycle_momentum=False)
  assert schedules.momentum is None
  assert np.all(momenta == 0)  # torch leaves RMSprop's momentum alone
  assert max_relative(optax_values(schedules.lr, 50), lrs) <= 5e-6


@pytest.mark.parametrize("bad,message", [
    ({}, "You must define either total_steps"),
    ({"total_steps": 0}, "positive integer total_steps"),
    ({"epochs": 2, "steps_per_epoch": 0}, "positive integer steps_per_epoch"),
    ({"total_steps": 10, "pct_start": 1.5}, "pct_start"),
    ({"total_steps": 10, "anneal_strategy": "exp"}, "anneal_strategy"),
])
def test_onecycle_rejects_what_torch_rejects(bad, message):
  p = torch.zeros(1)
  with pytest.raises(ValueError, match=message):
    lr_scheduler.OneCycleLR(torch.optim.RMSprop([p]), max_lr=LR, **bad)
  with pytest.raises(ValueError, match=message):
    optax_rmsprop.torch.torch_onecycle_schedules(LR, **bad)


# --- ReduceLROnPlateau ---------------------------------------------------------


def _metrics():
  """Per-epoch validation losses with plateaus, exact in float32 and never
  within float32 rounding of a threshold."""
  values, value = [], 1.0
  for length in (6, 14, 3, 20, 8, 12, 4, 16):
    values.append(value)
    values.extend([value + 0.0625 * (i % 3) for i in range(length)])
    value *= 0.5
  return values


def plateau_lrs(plateau, metrics, lr=LR, negate=False):
  """The porting guide's recipe: the plateau transform's scale, updated once
  per epoch with the metric, times the lr of the next epoch's updates."""
  state = plateau.init(jnp.zeros([]))
  step = jax.jit(lambda state, value: plateau.update(
      jnp.zeros([]), state, value=value)[1])
  lrs = []
  for metric in metrics:
    lrs.append(lr * float(state.scale))
    state = step(state, -metric if negate else metric)
  return np.array(lrs)


def torch_plateau_lrs(metrics, lr=LR, **kwargs):
  p = torch.zeros(1)
  opt = torch.optim.RMSprop([p], lr=lr)
  scheduler = lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
  lrs = []
  for metric in metrics:
    lrs.append(opt.param_groups[0]["lr"])
    scheduler.step(metric)
  return np.array(lrs)


PLATEAUS = [
    # (torch kwargs, optax.contrib.reduce_on_plateau kwargs, negate)
    ({}, {"factor": 0.1, "patience": 11, "rtol": 1e-4, "atol": 0.0}, False),
    ({"factor": 0.5, "patience": 2, "cooldown": 3, "threshold": 0.01},
     {"factor": 0.5, "patience": 3, "rtol": 0.01, "cooldown": 3}, False),
    ({"factor": 0.5, "patience": 1, "threshold": 0.1, "threshold_mode": "abs",
      "min_lr": 0.01},
     {"factor": 0.5, "patience": 2, "rtol": 0.0, "atol": 0.1,
      "min_scale": 0.01 / LR}, False),
    ({"mode": "max", "factor": 0.5, "patience": 2, "threshold": 0.1,
      "threshold_mode": "abs", "min_lr": 1e-5},
     {"factor": 0.5, "patience": 3, "rtol": 0.0, "atol": 0.1,
      "min_scale": 1e-5 / LR}, True),
]
# torch skips a reduction smaller than its eps (1e-8): min_lr stops the decay
# above it here, as optax has no such rule.


@pytest.mark.parametrize("torch_kwargs,optax_kwargs,negate", PLATEAUS)
def test_reduce_on_plateau_matches_torch(torch_kwargs, optax_kwargs, negate):
  metrics = _metrics()
  if negate:  # a metric to maximize (accuracy): torch sees it as it is
    metrics = [-m for m in metrics]
  expected = torch_plateau_lrs(metrics, **torch_kwargs)
  assert len(set(expected)) > 2  # the test sees several reductions
  actual = plateau_lrs(
      optax.contrib.reduce_on_plateau(**optax_kwargs),
      [-m for m in metrics] if negate else metrics)
  assert max_relative(actual, expected) <= 1e-6


def test_plateau_patience_off_by_one_is_caught():
  """optax counts the bad epoch that triggers; torch waits one more."""
  metrics = _metrics()
  expected = torch_plateau_lrs(metrics, factor=0.5, patience=2)
  wrong = plateau_lrs(
      optax.contrib.reduce_on_plateau(factor=0.5, patience=2), metrics)
  assert max_relative(wrong, expected) > 0.4


# --- Training-loop idioms, whole runs ------------------------------------------

TOLERANCE = 1e-5  # as test_presets_torch.py


def test_clip_grad_norm_is_clip_by_global_norm_before_the_preset():
  """``clip_grad_norm_(params, 1.0)`` before ``step()`` (the problem's
  gradient norm is ~8, so every update is clipped)."""
  kwargs = {"momentum": 0.9, "weight_decay": 0.01}
  params = torch_runs.torch_params()
  opt = torch.optim.RMSprop(list(params.values()), lr=0.01, **kwargs)

  def step():
    torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm=1.0)
    original_step()

  original_step, opt.step = opt.step, step
  expected = torch_runs.train_torch(opt, params, problem.STEPS)
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax_rmsprop.torch_rmsprop(lr=0.01, **kwargs))
  initial = problem.initial_params()
  _, _, actual = torch_runs.train_optax(tx, initial, tx.init(initial),
                                        problem.STEPS)
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"clip_grad_norm_: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE
  # Clipping after the preset clips the step, not the gradient: far off.
  wrong = optax.chain(optax_rmsprop.torch_rmsprop(lr=0.01, **kwargs),
                      optax.clip_by_global_norm(1.0))
  _, _, off = torch_runs.train_optax(wrong, initial, wrong.init(initial),
                                     problem.STEPS)
  assert problem.max_relative_deviation(off, expected) > 1e-3


RECIPE_S = 10  # updates per epoch; 500 updates = 50 epochs
RECIPE = dict(alpha=0.9, eps=0.0316, momentum=0.9)  # torchvision's RMSprop


def _recipe_schedule(lr):
  warmup = optax.linear_schedule(0.01 * lr, lr, 5)
  return optax.join_schedules([
      lambda count: warmup(count // RECIPE_S),
      optax.exponential_decay(lr, 2 * RECIPE_S, 0.973, staircase=True)],
      [5 * RECIPE_S])


@functools.lru_cache(maxsize=None)
def _torchvision_recipe_run():
  """torchvision's classification recipe for RMSprop: no weight decay on
  biases, LinearLR warm-up then StepLR, stepped once per epoch."""
  params = torch_runs.torch_params()
  opt = torch.optim.RMSprop(
      [{"params": [params["w"]], "weight_decay": 1e-3},
       {"params": [params["b"]], "weight_decay": 0.0}], lr=0.03, **RECIPE)
  scheduler = lr_scheduler.SequentialLR(opt, [
      lr_scheduler.LinearLR(opt, 0.01, 1.0, total_iters=5),
      lr_scheduler.StepLR(opt, step_size=2, gamma=0.973)], milestones=[5])
  return torch_runs.train_torch(opt, params, problem.STEPS, scheduler=scheduler,
                                steps_per_epoch=RECIPE_S)


def test_torchvision_recipe_matches_torch():
  tx = optax_rmsprop.torch.torch_param_groups(
      {"decay": {"weight_decay": 1e-3}, "no_decay": {"weight_decay": 0.0}},
      lambda params: jax.tree.map(
          lambda p: "decay" if p.ndim > 1 else "no_decay", params),
      lr=_recipe_schedule(0.03), **RECIPE)
  initial = problem.initial_params()
  _, _, actual = torch_runs.train_optax(tx, initial, tx.init(initial),
                                        problem.STEPS)
  deviation = problem.max_relative_deviation(actual, _torchvision_recipe_run())
  print(f"torchvision recipe: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_the_naive_port_of_the_recipe_is_caught():
  """One preset, decay everywhere, StepLR mapped per update: far off."""
  tx = optax_rmsprop.torch_rmsprop(
      lr=optax.exponential_decay(0.03, 2, 0.973, staircase=True),
      weight_decay=1e-3, **RECIPE)
  initial = problem.initial_params()
  _, _, actual = torch_runs.train_optax(tx, initial, tx.init(initial),
                                        problem.STEPS)
  assert problem.max_relative_deviation(
      actual, _torchvision_recipe_run()) > 1e-2


def test_onecycle_run_with_cycled_momentum_matches_torch():
  """OneCycleLR also cycles RMSprop's momentum (0.95 -> 0.85 -> 0.95)."""
  params = torch_runs.torch_params()
  opt = torch.optim.RMSprop(list(params.values()), lr=0.01)  # momentum=0!
  scheduler = lr_scheduler.OneCycleLR(opt, max_lr=0.01,
                                      total_steps=problem.STEPS)
  expected = torch_runs.train_torch(opt, params, problem.STEPS - 1,
                                    scheduler=scheduler)
  schedules = optax_rmsprop.torch.torch_onecycle_schedules(
      0.01, total_steps=problem.STEPS)
  tx = optax.inject_hyperparams(optax_rmsprop.torch_rmsprop)(
      lr=schedules.lr, momentum=schedules.momentum)
  initial = problem.initial_params()
  _, _, actual = torch_runs.train_optax(tx, initial, tx.init(initial),
                                        problem.STEPS - 1)
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"OneCycleLR run: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


@pytest.mark.parametrize("name", ["base_momentum", "max_momentum"])
def test_onecycle_rejects_nan_momentum_bounds(name):
  """The one range check without bounds: NaN must still fail (NaN compares
  false against any bound, so only the explicit NaN test catches it here),
  or every momentum of the schedule is NaN."""
  with pytest.raises(ValueError, match=name):
    optax_rmsprop.torch.torch_onecycle_schedules(0.1, 10, **{name: float("nan")})
