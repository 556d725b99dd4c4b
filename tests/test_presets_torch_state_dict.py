"""Moving a run between real ``torch.optim.RMSprop`` and `torch_rmsprop`.

Forward: N updates in torch, then the params and ``from_torch_state_dict`` of
its ``state_dict()`` continue M updates in JAX, compared with torch's own
continuation. Reverse: N updates in JAX, then ``to_torch_state_dict`` loaded
into a new torch optimizer continues M updates in torch, compared with the
JAX run's own continuation. Each side's gradient is the shared problem's at
its own params, so a wrong buffer, a lost step count or a swapped parameter
compounds. Deviations are listed in docs/porting.md.
"""

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import optax_rmsprop
from reference import problem
from reference import torch_runs

N, M = 60, 100  # updates before and after the move
LR, GAMMA, DROP_AT = 0.01, 0.99, 100  # DROP_AT falls after the move
PLAIN_TOLERANCE = 1e-6  # the bound for plain configurations
TOLERANCE = 1e-5  # centered: torch's lerp rounds differently (see porting.md)

CONFIGS = {
    "plain": ({}, None, PLAIN_TOLERANCE),
    "momentum": ({"momentum": 0.9}, None, PLAIN_TOLERANCE),
    "centered": ({"centered": True}, None, TOLERANCE),
    "everything": ({"momentum": 0.9, "centered": True, "weight_decay": 0.01,
                    "maximize": True, "eps": 0.1}, None, TOLERANCE),
    # lr x 0.1 at update 100: only right if the count continues from N.
    "lr drop": ({"momentum": 0.9}, "drop", PLAIN_TOLERANCE),
    "exponential lr": ({"momentum": 0.9}, "exponential", PLAIN_TOLERANCE),
}


def _schedule(kind):
  if kind == "drop":
    return optax.piecewise_constant_schedule(LR, {DROP_AT: 0.1})
  if kind == "exponential":
    return optax.exponential_decay(LR, 1, GAMMA)
  return LR


def _torch_lambda(kind):
  if kind == "drop":
    return lambda t: 1.0 if t < DROP_AT else 0.1
  return lambda t: GAMMA**t


def _sign(kwargs):
  return -1.0 if kwargs.get("maximize") else 1.0


def _torch_optimizer(params, kwargs, kind):
  opt = torch.optim.RMSprop(list(params.values()), lr=LR, **kwargs)
  scheduler = None
  if kind is not None:
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, _torch_lambda(kind))
  return opt, scheduler


def _complex(complex_params):
  if complex_params:
    return torch_runs.initial_complex_params()
  return problem.initial_params()


@functools.lru_cache(maxsize=None)
def _torch_run(name, complex_params=False):
  """(checkpoint after N updates, params then, the M updates after)."""
  kwargs, kind, _ = CONFIGS[name]
  run = dict(sign=_sign(kwargs), complex_params=complex_params)
  params = torch_runs.torch_params(_complex(complex_params))
  opt, scheduler = _torch_optimizer(params, kwargs, kind)
  torch_runs.train_torch(opt, params, N, scheduler=scheduler, **run)
  checkpoint = copy.deepcopy(opt.state_dict())
  jax_params = {k: jnp.array(p.numpy()) for k, p in params.items()}
  expected = torch_runs.train_torch(opt, params, M, N, scheduler, **run)
  return checkpoint, jax_params, expected


def _forward(name, tx, complex_params=False):
  """(torch's continuation, JAX's continuation from torch's checkpoint)."""
  checkpoint, params, expected = _torch_run(name, complex_params)
  state = optax_rmsprop.torch.from_torch_state_dict(checkpoint, tx, params)
  _, _, actual = torch_runs.train_optax(
      tx, params, state, M, N, sign=_sign(CONFIGS[name][0]),
      complex_params=complex_params)
  return expected, actual


def _reverse(name, tx, complex_params=False):
  """(JAX's continuation, torch's continuation from JAX's checkpoint)."""
  kwargs, kind, _ = CONFIGS[name]
  sign = _sign(kwargs)
  initial = _complex(complex_params)
  run = dict(sign=sign, complex_params=complex_params)
  params, state, _ = torch_runs.train_optax(
      tx, initial, tx.init(initial), N, **run)
  _, _, expected = torch_runs.train_optax(tx, params, state, M, N, **run)

  torch_params = torch_runs.torch_params(jax.device_get(params))
  opt = torch.optim.RMSprop(list(torch_params.values()), lr=LR, **kwargs)
  groups = opt.state_dict()["param_groups"]
  if kind is not None:  # where a torch scheduler resumed at update N starts
    groups[0]["initial_lr"] = LR
  opt.load_state_dict(optax_rmsprop.torch.to_torch_state_dict(
      state, params, groups, step=N))
  scheduler = None
  if kind is not None:
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt, _torch_lambda(kind), last_epoch=N - 1)
  actual = torch_runs.train_torch(opt, torch_params, M, N, scheduler, **run)
  return expected, actual


def _quick(names):
  return [name if name in names else pytest.param(name, marks=pytest.mark.slow)
          for name in CONFIGS]


@pytest.mark.parametrize(
    "name", _quick(("plain", "momentum", "everything", "lr drop")))
def test_torch_run_continues_in_jax(name):
  kwargs, kind, tolerance = CONFIGS[name]
  tx = optax_rmsprop.torch_rmsprop(lr=_schedule(kind), **kwargs)
  expected, actual = _forward(name, tx)
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"torch -> jax {name}: max rel dev {deviation:.2e}")
  assert deviation <= tolerance


@pytest.mark.parametrize("name", _quick(("plain", "everything", "lr drop")))
def test_jax_run_continues_in_torch(name):
  kwargs, kind, tolerance = CONFIGS[name]
  tx = optax_rmsprop.torch_rmsprop(lr=_schedule(kind), **kwargs)
  expected, actual = _reverse(name, tx)
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"jax -> torch {name}: max rel dev {deviation:.2e}")
  assert deviation <= tolerance


@pytest.mark.parametrize("name", _quick(("everything",)))
def test_complex_runs_move_both_ways(name):
  kwargs, kind, tolerance = CONFIGS[name]
  tx = optax_rmsprop.torch_rmsprop(lr=_schedule(kind), **kwargs)
  for direction, move in (("torch -> jax", _forward), ("jax -> torch",
                                                        _reverse)):
    expected, actual = move(name, tx, complex_params=True)
    deviation = problem.max_relative_deviation(actual, expected)
    print(f"{direction} complex {name}: max rel dev {deviation:.2e}")
    assert deviation <= tolerance


def test_a_lost_step_count_is_caught():
  """Restarting the schedule at 0 (the lr drop comes late) is far off."""
  kwargs, kind, _ = CONFIGS["lr drop"]
  tx = optax_rmsprop.torch_rmsprop(lr=_schedule(kind), **kwargs)
  checkpoint, params, expected = _torch_run("lr drop")
  state = optax_rmsprop.torch.from_torch_state_dict(checkpoint, tx, params)
  lost = jax.tree.map(
      lambda x: jnp.zeros_like(x) if x.dtype == jnp.int32 else x, state)
  _, _, actual = torch_runs.train_optax(tx, params, lost, M, N)
  assert problem.max_relative_deviation(actual, expected) > 1e-3


def test_zeroed_buffers_are_caught():
  """The comparison can fail: a fresh state in place of torch's is far off."""
  kwargs, _, _ = CONFIGS["everything"]
  tx = optax_rmsprop.torch_rmsprop(lr=LR, **kwargs)
  _, params, expected = _torch_run("everything")
  _, _, actual = torch_runs.train_optax(
      tx, params, tx.init(params), M, N, sign=-1.0)
  assert problem.max_relative_deviation(actual, expected) > 1e-3


# --- Parameter groups, names, wrappers ---------------------------------------

GROUPS = {"w": {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.01},
          "b": {"centered": True}}


def test_param_groups_by_name_continue_in_jax():
  """Two torch groups of named parameters, in another order than the
  params tree's leaves: ``names`` maps them."""
  params = torch_runs.torch_params()
  opt = torch.optim.RMSprop(
      [{"params": [("w", params["w"])], **GROUPS["w"]},
       {"params": [("b", params["b"])], **GROUPS["b"]}], lr=LR)
  scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, GAMMA)
  torch_runs.train_torch(opt, params, N, scheduler=scheduler)
  checkpoint = copy.deepcopy(opt.state_dict())
  jax_params = {k: jnp.array(p.numpy()) for k, p in params.items()}
  expected = torch_runs.train_torch(opt, params, M, N, scheduler)

  tx = optax_rmsprop.torch.torch_param_groups(
      {"w": {**GROUPS["w"], "lr": optax.exponential_decay(0.02, 1, GAMMA)},
       "b": {**GROUPS["b"], "lr": optax.exponential_decay(LR, 1, GAMMA)}},
      {"b": "b", "w": "w"})
  for names in ({"b": "b", "w": "w"}, {"b": 1, "w": 0}):
    state = optax_rmsprop.torch.from_torch_state_dict(
        checkpoint, tx, jax_params, names=names)
    _, _, actual = torch_runs.train_optax(tx, jax_params, state, M, N)
    deviation = problem.max_relative_deviation(actual, expected)
    print(f"torch -> jax two named groups: max rel dev {deviation:.2e}")
    assert deviation <= TOLERANCE


def test_param_groups_round_trip_through_torch():
  """JAX -> torch state dict -> JAX gives back the same state."""
  tx = optax_rmsprop.torch.torch_param_groups(
      {"w": {**GROUPS["w"], "lr": optax.exponential_decay(0.02, 1, GAMMA)},
       "b": GROUPS["b"]}, {"b": "b", "w": "w"}, lr=LR)
  params = problem.initial_params()
  params, state, _ = torch_runs.train_optax(tx, params, tx.init(params), 7)
  t_params = torch_runs.torch_params(jax.device_get(params))
  opt = torch.optim.RMSprop(
      [{"params": [t_params["w"]], **GROUPS["w"]},
       {"params": [t_params["b"]], **GROUPS["b"]}], lr=LR)
  names = {"b": 1, "w": 0}
  opt.load_state_dict(optax_rmsprop.torch.to_torch_state_dict(
      state, params, opt.state_dict()["param_groups"], names=names, step=7))
  assert float(opt.state[t_params["b"]]["step"]) == 7.0
  back = optax_rmsprop.torch.from_torch_state_dict(
      opt.state_dict(), tx, params, names=names)
  assert jax.tree.structure(back) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)


def test_inject_hyperparams_count_continues():
  tx = optax.inject_hyperparams(optax_rmsprop.torch_rmsprop)(
      lr=_schedule("drop"), momentum=0.9)
  expected, actual = _forward("lr drop", tx)
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"torch -> jax inject_hyperparams lr drop: max rel dev {deviation:.2e}")
  assert deviation <= PLAIN_TOLERANCE


def test_inject_hyperparams_default_run_moves_both_ways():
  """Issue #17: a default torch run (momentum 0) into injected torch_rmsprop
  used to be rejected ("torch has no momentum_buffer but the optax state
  has"): inject_hyperparams' array momentum 0 kept a buffer."""
  tx = optax.inject_hyperparams(optax_rmsprop.torch_rmsprop)(lr=LR)
  expected, actual = _forward("plain", tx)
  assert problem.max_relative_deviation(actual, expected) <= PLAIN_TOLERANCE
  params = jnp.ones(3)
  state = tx.init(params)
  back = optax_rmsprop.torch.to_torch_state_dict(
      state, params, [{"params": [0], "momentum": 0, "centered": False}])
  assert set(back["state"][0]) == {"step", "square_avg"}


def test_a_buffer_from_a_traced_init_is_explained():
  """The one way an injected momentum 0 still has a buffer (init traced)
  is named as the cause, not as a momentum mismatch."""
  tx = optax.inject_hyperparams(optax_rmsprop.torch_rmsprop)(lr=LR)
  state = jax.jit(tx.init)(jnp.ones(3))
  groups = [{"params": [0], "momentum": 0, "centered": False}]
  with pytest.raises(ValueError, match="injected momentum is 0: tx.init ran"):
    optax_rmsprop.torch.to_torch_state_dict(state, jnp.ones(3), groups)


def test_chained_with_clipping_and_a_fresh_torch_parameter():
  """State is found by type inside a chain; a parameter torch never updated
  (no gradient yet: empty torch state) keeps the initial zeros."""
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax_rmsprop.torch_rmsprop(momentum=0.9))
  w = torch.ones(3)
  unused = torch.ones(2)
  opt = torch.optim.RMSprop([w, unused], momentum=0.9)
  w.grad = torch.full((3,), 0.5)
  opt.step()
  params = [jnp.ones(3), jnp.ones(2)]
  state = optax_rmsprop.torch.from_torch_state_dict(opt.state_dict(), tx, params)
  nu = state[1].inner_state[0].nu
  np.testing.assert_allclose(nu[0], opt.state[w]["square_avg"].numpy())
  np.testing.assert_array_equal(nu[1], np.zeros(2))


# --- Errors --------------------------------------------------------------------


def _torch_checkpoint(**kwargs):
  w = torch.ones(3)
  opt = torch.optim.RMSprop([w], **kwargs)
  w.grad = torch.ones(3)
  opt.step()
  return opt.state_dict()


@pytest.mark.parametrize("torch_kwargs,ours,message", [
    ({"momentum": 0.9}, {}, "torch has momentum_buffer but the optax state"
     " has none"),
    ({}, {"momentum": 0.9}, "torch has no momentum_buffer"),
    ({"centered": True}, {}, "torch has grad_avg"),
])
def test_mismatched_buffers_are_named(torch_kwargs, ours, message):
  tx = optax_rmsprop.torch_rmsprop(**ours)
  with pytest.raises(ValueError, match=message):
    optax_rmsprop.torch.from_torch_state_dict(
        _torch_checkpoint(**torch_kwargs), tx, jnp.ones(3))


def test_mismatched_groups_are_named_on_the_way_back():
  tx = optax_rmsprop.torch_rmsprop()
  groups = [{"params": [0], "momentum": 0.9, "centered": False}]
  with pytest.raises(ValueError, match="torch has momentum_buffer"):
    optax_rmsprop.torch.to_torch_state_dict(
        tx.init(jnp.ones(3)), jnp.ones(3), groups, step=1)


def test_wrong_shape_count_and_name_are_errors():
  tx = optax_rmsprop.torch_rmsprop()
  checkpoint = _torch_checkpoint()
  with pytest.raises(ValueError, match="has shape"):
    optax_rmsprop.torch.from_torch_state_dict(checkpoint, tx, jnp.ones(4))
  with pytest.raises(ValueError, match="2 leaves but the torch optimizer 1"):
    optax_rmsprop.torch.from_torch_state_dict(
        checkpoint, tx, [jnp.ones(3), jnp.ones(3)])
  with pytest.raises(ValueError, match="no torch parameter named 'w'"):
    optax_rmsprop.torch.from_torch_state_dict(
        checkpoint, tx, {"w": jnp.ones(3)}, names={"w": "w"})


def test_a_constant_lr_needs_the_step():
  tx = optax_rmsprop.torch_rmsprop()
  with pytest.raises(ValueError, match="pass step="):
    optax_rmsprop.torch.to_torch_state_dict(
        tx.init(jnp.ones(3)), jnp.ones(3), [{"momentum": 0, "centered": False}])


def test_complex_torch_state_needs_the_view_as_real_split():
  w = torch.ones(3, dtype=torch.complex64)
  opt = torch.optim.RMSprop([w])
  w.grad = torch.ones(3, dtype=torch.complex64)
  opt.step()
  core = optax_rmsprop.rmsprop(0.01, 0.99, eps_in_sqrt=False)  # |g|² state
  with pytest.raises(ValueError, match="view-as-real split"):
    optax_rmsprop.torch.from_torch_state_dict(
        opt.state_dict(), core, jnp.ones(3, jnp.complex64))


def _int_leaves(state):
  return [x for x in jax.tree.leaves(state) if x.dtype == jnp.int32]


def test_a_bias_corrected_states_own_count_is_torchs_step():
  """Every update count in the state continues from torch's step, the count
  a bias-corrected RMS state keeps for itself as well as a schedule's."""
  checkpoint, params, _ = _torch_run("plain")
  tx = optax_rmsprop.rmsprop(LR, bias_correction=True)
  state = optax_rmsprop.torch.from_torch_state_dict(checkpoint, tx, params)
  counts = _int_leaves(state)
  assert counts and all(int(c) == N for c in counts), counts


def test_a_count_over_params_of_different_steps_is_the_largest():
  """A param without a gradient for a while (torch skips it: its step stays
  behind) must not set a shared schedule's count back: the count is the
  largest step among the params it counts for."""
  w = torch.nn.Parameter(torch.ones(3))
  b = torch.nn.Parameter(torch.ones(2))
  opt = torch.optim.RMSprop([w, b], lr=LR)
  for k in range(5):
    w.grad = torch.ones(3)
    b.grad = torch.ones(2) if k < 2 else None
    opt.step()
  assert [int(s["step"]) for s in opt.state_dict()["state"].values()] == [5, 2]
  tx = optax_rmsprop.torch_rmsprop(lr=optax.exponential_decay(LR, 1, GAMMA))
  state = optax_rmsprop.torch.from_torch_state_dict(
      opt.state_dict(), tx, {"w": jnp.ones(3), "b": jnp.ones(2)},
      names={"w": 0, "b": 1})
  counts = _int_leaves(state)
  assert counts and all(int(c) == 5 for c in counts), counts
