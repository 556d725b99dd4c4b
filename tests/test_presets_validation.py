"""Preset argument checks, and the presets under jit with schedules."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop

BAD_ARGUMENTS = [
    (optax_rmsprop.torch_rmsprop, "lr", -0.1),
    (optax_rmsprop.torch_rmsprop, "alpha", -0.5),
    (optax_rmsprop.torch_rmsprop, "alpha", 1.5),
    (optax_rmsprop.torch_rmsprop, "eps", -1e-8),
    (optax_rmsprop.torch_rmsprop, "weight_decay", -0.01),
    (optax_rmsprop.torch_rmsprop, "momentum", -0.9),
    (optax_rmsprop.torch_rmsprop, "momentum", 1.0),
    (optax_rmsprop.keras_rmsprop, "learning_rate", -0.1),
    (optax_rmsprop.keras_rmsprop, "rho", 1.1),
    (optax_rmsprop.keras_rmsprop, "momentum", -0.1),
    (optax_rmsprop.keras_rmsprop, "epsilon", -1e-7),
    (optax_rmsprop.keras_rmsprop, "weight_decay", -0.004),
    (optax_rmsprop.tf1_rmsprop, "learning_rate", float("nan")),
    (optax_rmsprop.tf1_rmsprop, "decay", 2.0),
    (optax_rmsprop.tf1_rmsprop, "momentum", 1.5),
    (optax_rmsprop.tf1_rmsprop, "epsilon", -1e-10),
    (optax_rmsprop.timm_rmsprop_tf, "lr", -0.01),
    (optax_rmsprop.timm_rmsprop_tf, "alpha", -0.9),
    (optax_rmsprop.timm_rmsprop_tf, "eps", -1e-10),
    (optax_rmsprop.timm_rmsprop_tf, "weight_decay", -1.0),
    (optax_rmsprop.timm_rmsprop_tf, "momentum", -0.9),
    (optax_rmsprop.dqn_rmsprop, "learning_rate", -0.00025),
    (optax_rmsprop.dqn_rmsprop, "decay", 1.05),
    (optax_rmsprop.dqn_rmsprop, "eps", -0.01),
    (optax_rmsprop.dqn_rmsprop, "weight_cost", -0.1),
]


@pytest.mark.parametrize(
    "preset,name,value", BAD_ARGUMENTS,
    ids=[f"{p.__name__}-{n}={v}" for p, n, v in BAD_ARGUMENTS])
def test_bad_argument_raises_naming_it(preset, name, value):
  kwargs = {name: value}
  if preset is optax_rmsprop.tf1_rmsprop and name != "learning_rate":
    kwargs["learning_rate"] = 0.01
  with pytest.raises(ValueError, match=rf"^{name} must be"):
    preset(**kwargs)


PRESETS = [
    lambda lr: optax_rmsprop.torch_rmsprop(lr, momentum=0.9, weight_decay=0.1),
    lambda lr: optax_rmsprop.keras_rmsprop(lr, momentum=0.9, weight_decay=0.1),
    lambda lr: optax_rmsprop.tf1_rmsprop(lr, momentum=0.9, centered=True),
    lambda lr: optax_rmsprop.timm_rmsprop_tf(
        lr, momentum=0.9, weight_decay=0.1, decoupled_decay=True),
    lambda lr: optax_rmsprop.dqn_rmsprop(lr, weight_cost=0.1),
]


@pytest.mark.parametrize("make", PRESETS, ids=[
    "torch", "keras", "tf1", "timm", "dqn"])
def test_zero_schedule_is_a_no_op_under_jit(make):
  """lr(count) is used for update `count`: lr 0 at the first update only."""
  schedule = lambda count: jnp.where(count == 0, 0.0, 0.1)
  tx = make(schedule)
  params = {"w": jnp.ones(3)}

  @jax.jit
  def step(params, state):
    grads = jax.tree.map(lambda p: 2.0 * p, params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  after_first, state = step(params, state)
  assert jnp.array_equal(after_first["w"], params["w"])
  after_second, _ = step(after_first, state)
  assert not jnp.array_equal(after_second["w"], params["w"])


P = optax_rmsprop
# Every preset in __all__: defaults, and options that switch state on/off.
INJECTED_CASES = [
    (P.torch_rmsprop, {}),
    (P.torch_rmsprop, {"momentum": 0.9}),
    (P.torch_rmsprop, {"weight_decay": 0.1, "centered": True}),
    (P.torch_rmsprop, {"momentum": 0.5, "weight_decay": 0.0, "maximize": True}),
    (P.keras_rmsprop, {}),
    (P.keras_rmsprop, {"momentum": 0.9, "weight_decay": 0.004}),
    (P.keras_rmsprop, {"momentum": 0.0, "clipnorm": 0.0}),
    (P.keras_rmsprop, {"global_clipnorm": 1.0, "centered": True}),
    (P.keras_rmsprop, {"clipvalue": 0.0, "use_ema": True}),
    (P.tf1_rmsprop, {"learning_rate": 0.01}),
    (P.tf1_rmsprop, {"learning_rate": 0.01, "momentum": 0.9}),
    (P.tf1_rmsprop, {"learning_rate": 0.01, "sparse": True}),
    (P.timm_rmsprop_tf, {}),
    (P.timm_rmsprop_tf, {"weight_decay": 0.1}),
    (P.timm_rmsprop_tf, {"weight_decay": 0.1, "decoupled_decay": True}),
    (P.timm_rmsprop_tf, {"momentum": 0.9, "caution": True}),
    (P.timm_rmsprop_tf, {
        "momentum": 0.9, "lr_in_momentum": False, "weight_decay": 0.01}),
    (P.dqn_rmsprop, {}),
    (P.dqn_rmsprop, {"weight_cost": 0.01}),
]


def _injected_values(preset, kwargs):
  """The Python numbers ``optax.inject_hyperparams`` injects for ``kwargs``
  (defaults applied), rounded to the float32 arrays it makes of them."""
  bound = inspect.signature(preset).bind(**kwargs)
  bound.apply_defaults()
  return {
      k: float(np.float32(v)) if isinstance(v, float) else v
      for k, v in bound.arguments.items()
  }


def _structure_and_dtypes(state):
  return jax.tree.structure(state), [
      jnp.result_type(x) for x in jax.tree.leaves(state)]


def _jitted_run(tx, params, steps=4):
  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates

  state, history = tx.init(params), []
  for i in range(steps):  # row 1 of "e" gets no gradient at odd steps
    grads = jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)) * (i % 2 == 0
        or jnp.arange(p.shape[0]).reshape((-1,) + (1,) * (p.ndim - 1)) != 1),
        params)
    params, state, updates = step(params, state, grads)
    history.append(updates)
  return state, history


@pytest.mark.parametrize(
    "preset,kwargs", INJECTED_CASES,
    ids=[f"{p.__name__}-{k}" for p, k in INJECTED_CASES])
def test_injected_hyperparameters_give_the_plain_state_and_numbers(
    preset, kwargs):
  """Issue #17: inject_hyperparams(preset) must be the preset. It used to
  build another optimizer: a momentum buffer for momentum 0, coupled decay
  on for weight_decay 0 (update then needed params), clipping at 0."""
  params = {"w": jnp.linspace(0.5, 1.5, 6).reshape(2, 3),
            "e": jnp.linspace(-1.0, 1.0, 8).reshape(4, 2)}
  injected = optax.inject_hyperparams(preset)(**kwargs)
  for plain_kwargs in (kwargs, _injected_values(preset, kwargs)):
    plain = preset(**plain_kwargs)
    assert _structure_and_dtypes(injected.init(params).inner_state) == (
        _structure_and_dtypes(plain.init(params)))
  # Bit for bit with the values inject_hyperparams holds (float32: a Python
  # 0.99 gives 1 - 0.99 rounded from float64, as PyTorch computes it).
  plain_state, plain_updates = _jitted_run(plain, params)
  injected_state, injected_updates = _jitted_run(injected, params)
  assert _structure_and_dtypes(injected_state.inner_state) == (
      _structure_and_dtypes(plain_state))
  for a, b in zip(jax.tree.leaves((plain_updates, plain_state)),
                  jax.tree.leaves((injected_updates,
                                   injected_state.inner_state))):
    np.testing.assert_array_equal(a, b)


def test_momentum_for_a_state_without_its_buffer_is_named():
  """A state initialised with momentum 0 has no buffer: a nonzero value at
  update is an error naming momentum, not a tree mismatch."""
  params = {"w": jnp.ones(3)}
  state = optax_rmsprop.torch_rmsprop().init(params)
  with pytest.raises(ValueError, match="^momentum=0.9, but .* momentum=0"):
    optax_rmsprop.torch_rmsprop(momentum=0.9).update(params, state, params)


def test_injected_weight_decay_zero_needs_no_params():
  """Coupled decay is off for weight_decay 0, injected or not."""
  tx = optax.inject_hyperparams(optax_rmsprop.torch_rmsprop)()
  params = {"w": jnp.ones(3)}
  updates, _ = jax.jit(tx.update)(params, tx.init(params))
  assert jnp.all(jnp.isfinite(updates["w"]))
