"""Preset argument checks, and the presets under jit with schedules."""

import jax
import jax.numpy as jnp
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


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_inject_hyperparams_under_jit(momentum):
  """Injected (array) momentum and weight decay, even 0, keep one structure."""
  tx = optax.inject_hyperparams(optax_rmsprop.torch_rmsprop)(
      lr=0.01, momentum=momentum, weight_decay=0.0)
  plain = optax_rmsprop.torch_rmsprop(lr=0.01, momentum=momentum)
  params = {"w": jnp.linspace(0.5, 1.5, 4)}

  def run(tx):
    @jax.jit
    def step(params, state):
      grads = jax.tree.map(jnp.sin, params)
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    p, state = params, tx.init(params)
    for _ in range(3):
      p, state = step(p, state)
    return p["w"]

  # Injected alpha is a float32 array, so 1 - alpha rounds differently.
  assert jnp.allclose(run(tx), run(plain), rtol=1e-5, atol=0)
