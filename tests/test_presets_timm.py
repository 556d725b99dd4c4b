"""`timm_rmsprop_tf` against timm's RMSpropTF: transcription and the real one.

The reference (tests/reference/timm_rmsprop_tf.py) follows timm 1.0.31's
timm/optim/rmsprop_tf.py op by op; both run the shared problem for 500 steps.
Caution only acts where the momentum buffer and the gradient disagree in
sign, which the shared problem (one-signed gradients) never does, so the
caution configurations run it with some gradient entries flipped (about 30 %
per step; the parameters still drift up, away from 0).

Real timm 1.0.31 is compared too (not a package dependency; CI installs it
with ``pip install --no-deps timm==1.0.31``, see ``_real_rmsprop_tf``).
"""

import importlib.util
import inspect
import itertools
import pathlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop
from reference import problem
from reference import runner
from reference import schedules
from reference import timm_rmsprop_tf as timm_reference

TOLERANCE = 1e-5
LR = 0.01
SIZE = sum(int(np.prod(s)) for s in problem.SHAPES.values())
SPLIT = [int(np.prod(s)) for s in problem.SHAPES.values()]
TIMM = importlib.util.find_spec("timm")  # optional, see the real-timm tests


def _flips(step):
  i = np.arange(SIZE, dtype=np.float64)
  return np.where(np.sin(7.31 * (step + 1) + 3.17 * i) > 0.55, -1.0, 1.0)


def flipped_gradient(params, step):
  """problem.gradient with ~30 % of its entries negated (from a formula)."""
  g = problem.flatten(problem.gradient(params, step))
  flat = (g * _flips(step)).astype(np.float32)
  return problem._split(flat)  # pylint: disable=protected-access


def run_reference(kwargs, lr, flips):
  opt = timm_reference.RMSpropTF(SIZE, split=SPLIT, **kwargs)
  if not flips:
    return problem.run_reference(opt, lr)
  p = problem.flatten(problem.initial_params())
  trajectory = [p]
  for t in range(problem.STEPS):
    g = problem.flatten(flipped_gradient(problem._split(p), t))  # pylint: disable=protected-access
    p = opt.step(p, g, lr(t) if callable(lr) else lr)
    trajectory.append(p)
  return np.stack(trajectory)


def run_optax(tx, flips):
  if not flips:
    return runner.run_optax(tx)

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = jax.tree.map(jnp.asarray, problem.initial_params())
  state = tx.init(params)
  host = problem.initial_params()
  trajectory = [problem.flatten(host)]
  for t in range(problem.STEPS):
    params, state = step(params, state, flipped_gradient(host, t))
    host = jax.device_get(params)
    trajectory.append(problem.flatten(host))
  return np.stack(trajectory)


def _max_lr(kwargs):
  """Corrected decay under a schedule needs timm's constructor lr."""
  return {"max_lr": LR} if kwargs.get("corrected_weight_decay") else {}


def _deviation(kwargs, schedule):
  flips = bool(kwargs.get("caution"))
  expected = run_reference(
      dict(kwargs, **_max_lr(kwargs)), schedules.python(schedule, LR), flips)
  tx = optax_rmsprop.timm_rmsprop_tf(
      lr=schedules.optax_schedule(schedule, LR), **kwargs, **_max_lr(kwargs))
  return problem.max_relative_deviation(run_optax(tx, flips), expected)


DEFAULT_CONFIGS = [
    ({}, "constant"),
    ({"momentum": 0.9}, "drop"),
    ({"momentum": 0.9, "lr_in_momentum": False}, "drop"),
    ({"centered": True, "eps": 0.1}, "exponential"),
    ({"weight_decay": 0.01}, "constant"),
    ({"weight_decay": 0.01, "decoupled_decay": True, "momentum": 0.9},
     "warmup_cosine"),
    ({"momentum": 0.9, "caution": True}, "constant"),
    ({"momentum": 0.9, "caution": True, "lr_in_momentum": False,
      "weight_decay": 0.01}, "drop"),
    ({"momentum": 0.9, "caution": True, "centered": True}, "warmup_cosine"),
    ({"weight_decay": 0.1, "decoupled_decay": True,
      "corrected_weight_decay": True, "momentum": 0.9}, "warmup_cosine"),
]

FULL_GRID = [
    ({"momentum": m, "centered": c, "weight_decay": w, "decoupled_decay": d,
      "corrected_weight_decay": r, "lr_in_momentum": i, "caution": a,
      "eps": e}, s)
    for m, c, w, d, r, i, a, e, s in itertools.product(
        [0.0, 0.9], [False, True], [0.0, 0.01], [False, True], [False, True],
        [True, False], [False, True], [1e-10, 0.1], schedules.KINDS)
    # skip options that change nothing
    if (w or not d) and (d or not r) and (m or (i and not a))
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


def test_takes_every_argument_of_timm_in_order_with_its_defaults():
  """A call copied from timm (minus ``params``) binds the same way."""
  ours = list(inspect.signature(optax_rmsprop.timm_rmsprop_tf).parameters
              .values())
  positional = [p for p in ours if p.kind == p.POSITIONAL_OR_KEYWORD]
  assert [(p.name, p.default) for p in positional] == list(
      timm_reference.ARGUMENTS)


@pytest.mark.parametrize("wrong,kwargs", [
    # Each pair: the option, and what one could mistake it for.
    ({"momentum": 0.9}, {"momentum": 0.9, "caution": True}),
    ({"weight_decay": 0.01, "momentum": 0.9},
     {"weight_decay": 0.01, "momentum": 0.9, "decoupled_decay": True}),
    ({"weight_decay": 0.1, "decoupled_decay": True, "momentum": 0.9},
     {"weight_decay": 0.1, "decoupled_decay": True, "momentum": 0.9,
      "corrected_weight_decay": True}),
])
def test_each_option_is_visible(wrong, kwargs):
  """Leaving an option out is far off the reference: the tests can fail."""
  schedule = "warmup_cosine"
  flips = bool(kwargs.get("caution"))
  expected = run_reference(
      dict(kwargs, **_max_lr(kwargs)), schedules.python(schedule, LR), flips)
  tx = optax_rmsprop.timm_rmsprop_tf(
      lr=schedules.optax_schedule(schedule, LR), **wrong)
  assert problem.max_relative_deviation(run_optax(tx, flips), expected) > 1e-3


def test_caution_without_momentum_changes_nothing():
  """timm masks only the momentum step: no buffer, no caution."""
  plain = run_optax(optax_rmsprop.timm_rmsprop_tf(lr=LR), flips=True)
  cautious = run_optax(
      optax_rmsprop.timm_rmsprop_tf(lr=LR, caution=True), flips=True)
  np.testing.assert_array_equal(cautious, plain)


def test_corrected_decay_with_a_constant_lr_is_the_usual_decay():
  kwargs = {"weight_decay": 0.1, "decoupled_decay": True, "momentum": 0.9}
  usual = runner.run_optax(optax_rmsprop.timm_rmsprop_tf(lr=LR, **kwargs))
  corrected = runner.run_optax(optax_rmsprop.timm_rmsprop_tf(
      lr=LR, corrected_weight_decay=True, **kwargs))
  np.testing.assert_allclose(corrected, usual, rtol=1e-6)


def test_corrected_decay_needs_a_positive_max_lr():
  with pytest.raises(ValueError, match="max_lr"):
    optax_rmsprop.timm_rmsprop_tf(
        lr=optax.linear_schedule(0.0, 0.01, 10), weight_decay=0.1,
        decoupled_decay=True, corrected_weight_decay=True)
  with pytest.raises(ValueError, match="positive max lr"):  # as timm
    optax_rmsprop.timm_rmsprop_tf(lr=0.0, corrected_weight_decay=True)
  with pytest.raises(ValueError, match="positive max lr"):
    optax_rmsprop.timm_rmsprop_tf(
        lr=optax.linear_schedule(0.0, 0.01, 10), weight_decay=0.1,
        decoupled_decay=True, corrected_weight_decay=True, max_lr=0.0)


def test_foreach_changes_nothing():
  kwargs = {"momentum": 0.9, "caution": True}
  params = jax.tree.map(jnp.asarray, problem.initial_params())
  grads = flipped_gradient(problem.initial_params(), 0)
  out = []
  for foreach in (None, True, False):
    tx = optax_rmsprop.timm_rmsprop_tf(lr=LR, foreach=foreach, **kwargs)
    out.append(tx.update(grads, tx.init(params), params)[0])
  for other in out[1:]:
    jax.tree.map(np.testing.assert_array_equal, other, out[0])


# --- Real timm, where installed ---------------------------------------------


def _real_rmsprop_tf():
  """timm's ``RMSpropTF`` class, or a skip if timm is not installed.

  CI installs it (``pip install --no-deps timm==1.0.31``; it is no package
  dependency) and fails on skips, so there these tests always run.

  ``import timm`` pulls in torchvision (for its models), which has no CPU
  wheel for torch 2.13 here; the optimizer's files need only torch, so when
  the package import fails they are loaded on their own, as a package of
  three modules (the file under test is timm's own, unchanged).
  """
  spec = TIMM
  if spec is None:
    pytest.skip("timm is not installed (pip install --no-deps timm==1.0.31)")
  try:
    from timm.optim.rmsprop_tf import RMSpropTF  # pylint: disable=g-import-not-at-top
    return RMSpropTF
  except (ImportError, RuntimeError):  # torchvision missing or mismatched
    pass
  optim = pathlib.Path(spec.submodule_search_locations[0]) / "optim"
  package = types.ModuleType("_timm_optim")
  package.__path__ = [str(optim)]
  sys.modules["_timm_optim"] = package
  for name in ("_types", "_helpers", "rmsprop_tf"):
    module_spec = importlib.util.spec_from_file_location(
        f"_timm_optim.{name}", optim / f"{name}.py")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
  return sys.modules["_timm_optim.rmsprop_tf"].RMSpropTF


def run_real_timm(kwargs, schedule, flips):
  rmsprop_tf = _real_rmsprop_tf()  # skips before importing torch
  import torch  # pylint: disable=g-import-not-at-top
  params = {k: torch.tensor(v) for k, v in problem.initial_params().items()}
  opt = rmsprop_tf(list(params.values()), lr=LR, **kwargs)
  factor = schedules.python(schedule, LR)
  trajectory = [problem.flatten(problem.initial_params())]
  for t in range(problem.STEPS):
    for group in opt.param_groups:  # what a per-step scheduler does
      group["lr"] = factor(t)
    host = {k: p.numpy() for k, p in params.items()}
    grads = flipped_gradient(host, t) if flips else problem.gradient(host, t)
    for k, p in params.items():
      p.grad = torch.from_numpy(grads[k])
    opt.step()
    trajectory.append(
        problem.flatten({k: p.numpy() for k, p in params.items()}))
  return np.stack(trajectory)


REAL_CONFIGS = [
    ({"momentum": 0.9}, "drop"),
    ({"centered": True, "weight_decay": 0.01}, "exponential"),
    ({"momentum": 0.9, "caution": True}, "constant"),
    ({"momentum": 0.9, "caution": True, "lr_in_momentum": False,
      "centered": True}, "warmup_cosine"),
    ({"weight_decay": 0.1, "decoupled_decay": True,
      "corrected_weight_decay": True, "momentum": 0.9, "caution": True},
     "warmup_cosine"),
]


@pytest.mark.parametrize("kwargs,schedule", REAL_CONFIGS)
def test_matches_real_timm(kwargs, schedule):
  flips = bool(kwargs.get("caution"))
  expected = run_real_timm(kwargs, schedule, flips)
  tx = optax_rmsprop.timm_rmsprop_tf(
      lr=schedules.optax_schedule(schedule, LR), **kwargs, **_max_lr(kwargs))
  actual = run_optax(tx, flips)
  deviation = problem.max_relative_deviation(actual, expected)
  reference = run_reference(
      dict(kwargs, **_max_lr(kwargs)), schedules.python(schedule, LR), flips)
  reference_deviation = problem.max_relative_deviation(reference, expected)
  print(f"real timm {kwargs} {schedule}: max rel dev {deviation:.2e},"
        f" transcription {reference_deviation:.2e}")
  assert deviation <= TOLERANCE
  assert reference_deviation <= 2e-6  # torch fuses some multiply-adds


def test_transcribed_arguments_are_timms():
  ours = list(timm_reference.ARGUMENTS)
  theirs = list(inspect.signature(_real_rmsprop_tf()).parameters.values())[1:]
  assert [(p.name, p.default) for p in theirs] == ours


def test_decoupled_decay_factor_is_computed_in_float64_for_float64_params():
  """timm's p.mul_(1 - lr·λ) takes Python floats: on float64 params the
  factor is float64, not 1 - lr·λ rounded to float32."""
  with jax.enable_x64(True):
    params = jnp.array([1.0, -3.0, 7.5], jnp.float64)
    tx = optax_rmsprop.timm_rmsprop_tf(
        lr=0.1, weight_decay=0.3, decoupled_decay=True)
    # A zero gradient: the step is 0, only the decay moves the params.
    updates, _ = tx.update(jnp.zeros_like(params), tx.init(params), params)
    assert updates.dtype == jnp.float64
    new = np.asarray(optax.apply_updates(params, updates))
    np.testing.assert_array_equal(new, np.asarray(params) * (1.0 - 0.1 * 0.3))
