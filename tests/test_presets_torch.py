"""`torch_rmsprop` against real ``torch.optim.RMSprop`` (torch 2.13, CPU).

Both run the shared problem (tests/reference/problem.py): each side's
gradient is the NumPy one at its own current params, so any difference
compounds over the 500 steps. Deviations measured on the author's machine
(x86-64 CPU) are listed in docs/porting.md; the tolerance sits above the
worst of them (6.7e-6, centered: torch averages the mean gradient with
``lerp``, the core with the weighted form) and far below what any convention
error gives (>1e-3, see ``test_a_wrong_convention_is_caught``).

Complex parameters run the same problem with each complex element holding two
of its real coordinates (``torch.view_as_real``), over PyTorch's own RMSprop
test configurations (``optim_inputs_func_rmsprop``).
"""

import ast
import inspect
import itertools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import optax_rmsprop
from reference import problem
from reference import runner
from reference import schedules
from reference import torch_rmsprop as torch_reference
from reference import torch_runs

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
  tx = optax_rmsprop.torch_rmsprop(
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
  actual = runner.run_optax(optax_rmsprop.torch_rmsprop())
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
  actual = runner.run_optax(optax_rmsprop.rmsprop(**options))
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
  state = optax_rmsprop.torch_rmsprop(**kwargs).init(params)
  buffers = [x for x in jax.tree.leaves(state) if np.ndim(x) > 0]
  assert len(buffers) == torch_buffers


# --- Every argument torch.optim.RMSprop takes -------------------------------


def test_takes_every_argument_of_torch_in_order_with_its_defaults():
  """A call copied from PyTorch (minus ``params``) binds the same way."""
  theirs = list(inspect.signature(torch.optim.RMSprop).parameters.values())[1:]
  ours = list(inspect.signature(optax_rmsprop.torch_rmsprop).parameters.values())
  assert [p.name for p in ours] == [p.name for p in theirs]
  assert [p.default for p in ours] == [p.default for p in theirs]


@pytest.mark.parametrize("flags", [
    {"foreach": True},
    pytest.param({"differentiable": True}, marks=pytest.mark.slow),
    pytest.param({"foreach": False, "differentiable": False,
                  "capturable": False}, marks=pytest.mark.slow)])
def test_kernel_flags_change_nothing(flags):
  """torch runs these flags (its multi-tensor / differentiable kernels);
  ``capturable`` (CUDA only) is in the complex configurations below."""
  kwargs = {"momentum": 0.9, "centered": True, "weight_decay": 0.01}
  expected = run_torch({**kwargs, **flags}, "exponential")
  tx = optax_rmsprop.torch_rmsprop(
      schedules.optax_schedule("exponential", LR), **kwargs, **flags)
  deviation = problem.max_relative_deviation(runner.run_optax(tx), expected)
  print(f"torch {flags}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_multi_element_tensor_lr_is_rejected_like_torch():
  lr = torch.tensor([0.001, 0.001])
  with pytest.raises(ValueError, match="Tensor lr must be 1-element") as theirs:
    torch.optim.RMSprop([torch.zeros(2)], lr=lr)
  with pytest.raises(ValueError, match=str(theirs.value)):
    optax_rmsprop.torch_rmsprop(lr=lr)
  with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
    optax_rmsprop.torch_rmsprop(lr=jnp.array([0.001, 0.001]))


@pytest.mark.parametrize("lr", [
    torch.tensor(0.001), torch.tensor([0.001]), np.float32(0.001),
    jnp.array([[0.001]])], ids=["tensor", "tensor[1]", "np.float32", "jnp[1,1]"])
def test_one_element_lr_is_a_scalar_lr(lr):
  """Like torch: a one-element lr, whatever its shape, is the scalar."""
  params = problem.initial_params()
  tx = optax_rmsprop.torch_rmsprop(lr=lr, momentum=0.9)
  reference = optax_rmsprop.torch_rmsprop(lr=np.float32(0.001), momentum=0.9)
  grads = problem.gradient(params, 0)
  updates, _ = tx.update(grads, tx.init(params), params)
  expected, _ = reference.update(grads, reference.init(params), params)
  for u, e in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
    assert u.shape == e.shape
    np.testing.assert_array_equal(u, e)


def test_one_element_tensor_lr_matches_torch():
  lr = torch.tensor(0.003)
  expected = run_torch({"momentum": 0.9}, lr=lr)
  tx = optax_rmsprop.torch_rmsprop(lr=lr, momentum=0.9)
  deviation = problem.max_relative_deviation(runner.run_optax(tx), expected)
  print(f"torch tensor lr: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


# --- Complex parameters: torch.view_as_real semantics ------------------------

# PyTorch's own RMSprop test inputs, transcribed from torch 2.13's
# torch/testing/_internal/common_optimizers.py, optim_inputs_func_rmsprop
# (the module needs `expecttest`, so it is not imported). The CUDA-only
# configurations run here without `capturable` on the torch side, as the flag
# does not change the numbers.
TORCH_OPTIM_INPUTS = {
    "default": {},
    "non-default lr": {"lr": 1e-3},
    "nonzero weight_decay": {"weight_decay": 0.1},
    "maximize": {"maximize": True},
    "centered": {"weight_decay": 0.1, "centered": True},
    "maximize, weight_decay": {"maximize": True, "weight_decay": 0.1},
    "momentum": {"weight_decay": 0.1, "centered": True, "momentum": 0.1},
    "maximize, centered, weight_decay, w/ momentum": {
        "weight_decay": 0.1, "centered": True, "momentum": 0.1,
        "maximize": True},
    "capturable": {"capturable": True},
    "capturable, maximize": {
        "weight_decay": 0.1, "maximize": True, "capturable": True},
    "Tensor lr with capturable": {
        "lr": torch.tensor(0.001), "capturable": True},
}


def _installed_optim_input_descriptions():
  path = (pathlib.Path(torch.__file__).parent
          / "testing/_internal/common_optimizers.py")
  if not path.exists():
    pytest.skip("this torch ships no common_optimizers.py")
  tree = ast.parse(path.read_text())
  function = next(
      node for node in ast.walk(tree)
      if isinstance(node, ast.FunctionDef)
      and node.name == "optim_inputs_func_rmsprop")
  return {
      keyword.value.value
      for node in ast.walk(function) if isinstance(node, ast.Call)
      for keyword in node.keywords
      if keyword.arg == "desc" and isinstance(keyword.value, ast.Constant)}


def test_transcribed_inputs_are_torchs_current_ones():
  assert set(TORCH_OPTIM_INPUTS) == _installed_optim_input_descriptions()


COMPLEX_STEPS = 200


def _torch_kwargs(kwargs):
  kwargs = dict(kwargs)
  kwargs.pop("capturable", None)  # CUDA only; torch refuses it on CPU
  return kwargs


def run_torch_complex(kwargs, sign, steps=COMPLEX_STEPS):
  initial = torch_runs.initial_complex_params()
  params = torch_runs.torch_params(initial)
  opt = torch.optim.RMSprop(list(params.values()), **_torch_kwargs(kwargs))
  trajectory = torch_runs.train_torch(opt, params, steps, sign=sign,
                                      complex_params=True)
  return np.concatenate([[torch_runs.as_real(initial)], trajectory])


def run_optax_complex(tx, sign, steps=COMPLEX_STEPS):
  params = torch_runs.initial_complex_params()
  _, _, trajectory = torch_runs.train_optax(
      tx, params, tx.init(params), steps, sign=sign, complex_params=True)
  return np.concatenate([[torch_runs.as_real(params)], trajectory])


QUICK_COMPLEX = ("default", "maximize, centered, weight_decay, w/ momentum",
                 "Tensor lr with capturable")


@pytest.mark.parametrize("desc", [
    desc if desc in QUICK_COMPLEX else pytest.param(desc, marks=pytest.mark.slow)
    for desc in TORCH_OPTIM_INPUTS])
def test_complex_params_match_torch(desc):
  kwargs = TORCH_OPTIM_INPUTS[desc]
  sign = -1.0 if kwargs.get("maximize") else 1.0
  expected = run_torch_complex(kwargs, sign)
  actual = run_optax_complex(optax_rmsprop.torch_rmsprop(**kwargs), sign)
  assert actual.dtype == np.float32  # parts of complex64 params
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"torch complex {desc}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_complex_params_are_their_real_and_imaginary_parts():
  """As in PyTorch, a complex run is the run on the parts as reals (to
  float32 rounding: XLA fuses the differently shaped leaves differently)."""
  kwargs = {"momentum": 0.9, "centered": True, "weight_decay": 0.01}
  tx = optax_rmsprop.torch_rmsprop(
      schedules.optax_schedule("drop", LR), **kwargs)
  as_real = runner.run_optax(tx, steps=COMPLEX_STEPS)
  as_complex = run_optax_complex(tx, 1.0)
  assert problem.max_relative_deviation(as_complex, as_real) <= 1e-6


@pytest.mark.parametrize("centered", [False, True])
def test_complex_abs_squared_convention_is_caught(centered):
  """The core's |g|² on complex params is a different optimizer: far off."""
  expected = run_torch_complex({"centered": centered}, 1.0)
  core = optax_rmsprop.rmsprop(
      LR, decay=0.99, eps=1e-8, eps_in_sqrt=False, centered=centered)
  actual = run_optax_complex(core, 1.0)
  assert problem.max_relative_deviation(actual, expected) > 1e-3


def test_torch_default_eps_matters_for_tiny_gradients():
  """|g| ~ 1e-9: √((1 - α) g²) ~ 1e-10 is below ε = 1e-8."""
  rng = np.random.default_rng(1)
  w0 = rng.normal(size=5).astype(np.float32)
  grads = [(rng.normal(size=5) * 1e-9).astype(np.float32) for _ in range(5)]
  w = torch.tensor(w0.copy(), requires_grad=True)
  opt = torch.optim.RMSprop([w])  # every default
  for g in grads:
    w.grad = torch.tensor(g)
    opt.step()
  expected = w.detach().numpy()
  tx = optax_rmsprop.torch_rmsprop()
  p, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
  for g in grads:
    updates, state = tx.update(jnp.asarray(g), state, p)
    p = optax.apply_updates(p, updates)
  np.testing.assert_allclose(np.asarray(p), expected, rtol=2e-6)
  moved = np.max(np.abs(expected - w0))
  wrong = optax_rmsprop.torch_rmsprop(eps=1e-10)
  q, state = jnp.asarray(w0), wrong.init(jnp.asarray(w0))
  for g in grads:
    updates, state = wrong.update(jnp.asarray(g), state, q)
    q = optax.apply_updates(q, updates)
  assert np.max(np.abs(np.asarray(q) - expected)) > 0.5 * moved


@pytest.mark.parametrize("kwargs", [{}, {"weight_decay": 0.1, "momentum": 0.9}])
def test_a_frozen_complex_param_gets_a_none_update_and_keeps_its_state(kwargs):
  """A None gradient of a complex param (split into a (real, imaginary) pair
  of states) gives a None update and leaves its pair untouched; the other
  params step as without it."""
  params = {"z": jnp.array([1 + 1j, 2 - 1j], jnp.complex64),
            "frozen": jnp.array([3 - 2j], jnp.complex64)}
  tx = optax_rmsprop.torch_rmsprop(lr=0.1, **kwargs)
  alone = optax_rmsprop.torch_rmsprop(lr=0.1, **kwargs)
  state, alone_state = tx.init(params), alone.init({"z": params["z"]})
  before = state
  for t in range(3):
    g = jnp.array([0.5 - 1j, -1 + 0.25j], jnp.complex64) * (t + 1)
    updates, state = tx.update({"z": g, "frozen": None}, state, params)
    expected, alone_state = alone.update({"z": g}, alone_state,
                                         {"z": params["z"]})
    assert updates["frozen"] is None
    np.testing.assert_array_equal(updates["z"], expected["z"])
  frozen = lambda s: [
      leaf for path, leaf in jax.tree_util.tree_leaves_with_path(s)
      if "frozen" in jax.tree_util.keystr(path)
  ]
  assert len(frozen(state)) == len(frozen(before)) > 0
  for a, e in zip(frozen(state), frozen(tx.init(params))):
    np.testing.assert_array_equal(a, e)
