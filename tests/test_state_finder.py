"""The optimizer state is found by type through any stack of wrappers.

`rms_stats` and the torch and Keras converters share one walk over the
state; these tests build nested wrapper stacks (chain, inject_hyperparams,
MultiSteps, masked, apply_if_finite, partition, stack_leaves) and check, via
the public API only, that each finds the state, the hyperparameters and the
group that enclose it, and the innermost update count around it.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

import optax_rmsprop  # noqa: E402

PARAMS = {"a": jnp.ones(3), "b": {"c": jnp.ones((2, 2))}, "frozen": None}
GRADS = {"a": jnp.arange(3.0), "b": {"c": jnp.full((2, 2), 2.0)},
         "frozen": None}


def run(tx, steps, params=PARAMS, grads=GRADS):
  state = tx.init(params)
  for _ in range(steps):
    _, state = tx.update(grads, state, params)
  return state


def test_every_wrapper_at_once_finds_the_state_its_lr_and_its_count():
  # apply_if_finite(masked(MultiSteps(chain(clip, inject(rmsprop))))): the
  # count is the inject's (updates of the inner optimizer), not MultiSteps'
  # calls, and the lr the injected one.
  inner = optax.chain(
      optax.clip(10.0),
      optax.inject_hyperparams(optax_rmsprop.rmsprop)(learning_rate=0.5,
                                                      eps=1e-3),
  )
  tx = optax.apply_if_finite(
      optax.masked(optax.MultiSteps(inner, every_k_schedule=2),
                   {"a": True, "b": True, "frozen": False}), 3)
  stats = optax_rmsprop.rms_stats(run(tx, 6), quantiles=(0.0, 1.0))
  assert int(stats["count"]) == 3
  assert float(stats["learning_rate"]) == pytest.approx(0.5)
  assert {"nu/a/max", "nu/b/c/max"} <= set(stats)


def test_the_innermost_counter_wins():
  # An outer inject_hyperparams counts every call; the schedule's counter
  # inside MultiSteps counts the inner updates: the lr schedule is called
  # with the inner one.
  schedule = optax.piecewise_constant_schedule(1.0, {2: 0.1})
  inner = optax_rmsprop.rmsprop(schedule, eps=1e-3)
  tx = optax.inject_hyperparams(
      lambda scale: optax.chain(
          optax.MultiSteps(inner, 2).gradient_transformation(),
          optax.scale(scale)))(scale=1.0)
  stats = optax_rmsprop.rms_stats(run(tx, 4), learning_rate=schedule,
                                  eps=1e-3, quantiles=(1.0,))
  assert int(stats["count"]) == 2
  assert float(stats["learning_rate"]) == pytest.approx(1.0)  # schedule(1)
  stats = optax_rmsprop.rms_stats(run(tx, 6), learning_rate=schedule,
                                  eps=1e-3, quantiles=(1.0,))
  assert int(stats["count"]) == 3
  assert float(stats["learning_rate"]) == pytest.approx(0.1)  # schedule(2)


def test_partition_groups_under_wrappers_take_their_own_injected_lr():
  labels = {"a": "fast", "b": {"c": "slow"}, "frozen": "slow"}
  group = lambda lr: optax.inject_hyperparams(optax_rmsprop.rmsprop)(  # noqa: E731
      learning_rate=lr, eps=1e-3)
  tx = optax.chain(
      optax.apply_if_finite(
          optax.partition({"fast": group(1.0), "slow": group(0.01)}, labels),
          2))
  state = run(tx, 2)
  stats = optax_rmsprop.rms_stats(state, quantiles=(1.0,))
  lrs = {k: float(v) for k, v in stats.items() if k.endswith("learning_rate")}
  assert sorted(lrs.values()) == pytest.approx([0.01, 1.0])
  assert all(("fast" in k) == (v == 1.0) for k, v in lrs.items())
  # A dict per group label overrides one group and leaves the other's.
  stats = optax_rmsprop.rms_stats(state, learning_rate={"slow": 0.5},
                                  quantiles=(1.0,))
  lrs = {k: float(v) for k, v in stats.items() if k.endswith("learning_rate")}
  assert sorted(lrs.values()) == pytest.approx([0.5, 1.0])


def test_stack_leaves_inside_inject_hyperparams_is_recorded():
  params = {"x": jnp.ones(4), "y": jnp.ones(4), "z": jnp.ones(2)}
  grads = {k: jnp.full_like(v, 3.0) for k, v in params.items()}
  tx = optax.chain(
      optax.identity(),
      optax.inject_hyperparams(
          lambda learning_rate: optax_rmsprop.tools.stack_leaves(
              optax_rmsprop.rmsprop(learning_rate, eps=1e-3)))(
                  learning_rate=0.1))
  state = run(tx, 1, params, grads)
  stats = optax_rmsprop.rms_stats(state, eps=1e-3, quantiles=(1.0,))
  assert {k for k in stats if k.startswith("nu/")} == {
      "nu/group0/max", "nu/group1/max"}
  stats = optax_rmsprop.rms_stats(state, eps=1e-3, quantiles=(1.0,),
                                  params=params)
  assert {k for k in stats if k.startswith("nu/")} == {
      "nu/x/max", "nu/y/max", "nu/z/max"}
  assert float(stats["nu/x/max"]) == pytest.approx(0.1 * 9.0)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_torch_state_through_wrappers_round_trips(momentum):
  pytest.importorskip("torch")
  params = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
  grads = {"a": jnp.arange(3.0), "b": jnp.full((2, 2), 2.0)}
  tx = optax.apply_if_finite(
      optax.chain(
          optax.identity(),
          optax.inject_hyperparams(optax_rmsprop.torch_rmsprop)(
              lr=0.01, momentum=momentum)), 3)
  state = run(tx, 3, params, grads)
  groups = [{"params": [0, 1], "lr": 0.01, "momentum": momentum,
             "centered": False}]
  torch_state = optax_rmsprop.torch.to_torch_state_dict(state, params, groups)
  # The step is the injected count (the innermost counter around the state).
  assert [float(e["step"]) for e in torch_state["state"].values()] == [3, 3]
  assert ("momentum_buffer" in torch_state["state"][0]) == (momentum > 0)
  back = optax_rmsprop.torch.from_torch_state_dict(torch_state, tx, params)
  # apply_if_finite's own counters are no update counts: they stay at init.
  assert int(back.total_notfinite) == 0
  got = jax_leaves(back.inner_state)
  want = jax_leaves(state.inner_state)
  assert len(got) == len(want)
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6)


def jax_leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.leaves(tree)


def test_keras_state_under_multisteps_and_inject_round_trips():
  keras = pytest.importorskip("keras")
  tx = optax_rmsprop.keras_rmsprop(0.01, momentum=0.5,
                                   gradient_accumulation_steps=2)
  params = [np.ones(3, np.float32)]
  grads = [np.array([0.5, -1.0, 2.0], np.float32)]
  state = run(tx, 5, params, grads)
  w = keras.Variable(np.ones(3, np.float32))
  optimizer = keras.optimizers.RMSprop(0.01, momentum=0.5,
                                       gradient_accumulation_steps=2)
  optimizer.build([w])
  values = optax_rmsprop.keras.to_keras_variables(state, optimizer)
  assert int(values[0]) == 5  # 2 updates x 2 + 1 accumulated call
  back = optax_rmsprop.keras.from_keras_variables(
      optimizer, params, tx, optimizer_variables=values)
  for g, w_ in zip(jax_leaves(back), jax_leaves(state)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w_), rtol=1e-6)
