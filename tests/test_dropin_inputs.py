"""Drop-in at the edges: None leaves, optax's state, every input optax takes.

What a user switching from ``optax.rmsprop`` brings along: frozen params
(``None`` gradients), an optax state in memory or in a checkpoint, optax's
state utilities, NumPy arrays and Python scalars, code that rebuilds the
optimizer outside jit, empty trees.
"""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from compile_log import compiles_during
from flax import serialization

import optax_rmsprop

PARAMS = {
    "w": jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32),
    "b": jnp.linspace(-1.0, 1.0, 4, dtype=jnp.float32),
}


def grads_at(step, params=PARAMS):
  return jax.tree.map(lambda p: jnp.cos(p + step), params)


# Every optax.rmsprop state class and layout: plain, momentum, centered,
# bias correction, a schedule (its count), nesterov.
SHARED = {
    "plain": dict(learning_rate=0.01),
    "momentum": dict(learning_rate=0.01, momentum=0.9),
    "centered": dict(learning_rate=0.01, centered=True),
    "bias": dict(learning_rate=0.01, bias_correction=True),
    "everything": dict(
        learning_rate=optax.exponential_decay(0.02, 5, 0.8),
        eps_in_sqrt=False,
        centered=True,
        momentum=0.9,
        nesterov=True,
        bias_correction=True,
        initial_scale=0.1,
    ),
}


def steps(tx, state, params, start, n, jit=True):
  update = jax.jit(tx.update) if jit else tx.update
  for i in range(start, start + n):
    updates, state = update(grads_at(i, params), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- 1. None gradient leaves ------------------------------------------------

TRANSFORMS = {
    "scale_by_rms": lambda: optax_rmsprop.scale_by_rms(centered=True,
                                                       bias_correction=True),
    "momentum": lambda: optax_rmsprop.momentum(0.9, nesterov=True),
    "add_decoupled_weight_decay": lambda: (
        optax_rmsprop.add_decoupled_weight_decay(0.1, 0.5)
    ),
    "rmsprop": lambda: optax_rmsprop.rmsprop(0.01, **{
        k: v for k, v in SHARED["everything"].items() if k != "learning_rate"
    }),
    "rmsprop_extras": lambda: optax_rmsprop.rmsprop(
        0.01, momentum=0.9, lr_in_momentum=False, coupled_weight_decay=0.1,
        decoupled_weight_decay=0.1, maximize=True, nu_dtype=jnp.bfloat16,
        momentum_dtype=jnp.bfloat16,
    ),
    "torch_rmsprop": lambda: optax_rmsprop.torch_rmsprop(
        momentum=0.9, centered=True, weight_decay=0.1),
    "keras_rmsprop": lambda: optax_rmsprop.keras_rmsprop(
        momentum=0.9, weight_decay=0.1),
    "tf1_rmsprop": lambda: optax_rmsprop.tf1_rmsprop(0.01, momentum=0.9),
    "timm_rmsprop_tf": lambda: optax_rmsprop.timm_rmsprop_tf(
        momentum=0.9, weight_decay=0.1, decoupled_decay=True),
    "dqn_rmsprop": lambda: optax_rmsprop.dqn_rmsprop(weight_cost=0.1),
    "stack_leaves": lambda: optax_rmsprop.tools.stack_leaves(
        optax_rmsprop.rmsprop(0.01, centered=True, momentum=0.9)),
    "lazy_rows": lambda: optax_rmsprop.tools.lazy_rows(
        optax_rmsprop.tf1_rmsprop(0.01, momentum=0.9, centered=True)),
    "cautious": lambda: optax_rmsprop.tools.cautious(
        optax_rmsprop.rmsprop(0.01, momentum=0.9)),
}


def frozen_paths_unchanged(old_state, new_state):
  """State leaves under the key 'frozen' (per-param state) are unchanged."""
  old = dict(jax.tree_util.tree_leaves_with_path(old_state))
  new = dict(jax.tree_util.tree_leaves_with_path(new_state))
  frozen = [p for p in old if "frozen" in jax.tree_util.keystr(p)]
  for path in frozen:
    np.testing.assert_array_equal(np.asarray(new[path]), np.asarray(old[path]))
  return len(frozen)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("name", TRANSFORMS)
def test_none_gradient_gives_none_update_and_keeps_its_state(name, jit):
  params = {"a": PARAMS["w"], "frozen": PARAMS["w"] * 2}
  tx = TRANSFORMS[name]()
  update = jax.jit(tx.update) if jit else tx.update
  state = tx.init(params)
  # One full step first, so the frozen leaf's state is not its initial value.
  _, state = update(grads_at(0, params), state, params)
  grads = {"a": grads_at(1, params)["a"], "frozen": None}
  updates, new_state = update(grads, state, params)
  assert updates["frozen"] is None
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  if name != "stack_leaves":  # stacked rows: tested in test_stacked.py
    assert frozen_paths_unchanged(state, new_state) > 0 or name in (
        "add_decoupled_weight_decay",  # holds no per-param state
    )
  # The other leaf is updated exactly as without the frozen one.
  alone = TRANSFORMS[name]()
  alone_update = jax.jit(alone.update) if jit else alone.update
  s = alone.init({"a": params["a"]})
  _, s = alone_update({"a": grads_at(0, params)["a"]}, s, {"a": params["a"]})
  want, _ = alone_update({"a": grads["a"]}, s, {"a": params["a"]})
  np.testing.assert_array_max_ulp(updates["a"], want["a"], maxulp=2)


@pytest.mark.parametrize("name", SHARED)
def test_none_gradient_updates_equal_optax(name):
  """optax.rmsprop passes None through too; the other leaves' updates and
  (bitwise) state agree. (optax replaces the frozen leaf's state by None;
  ours keeps it, so the state's structure stays fixed under jit/scan.)"""
  ours, theirs = optax_rmsprop.rmsprop(**SHARED[name]), optax.rmsprop(
      **SHARED[name])
  s1, s2 = ours.init(PARAMS), theirs.init(PARAMS)
  for i in range(3):
    grads = {"w": grads_at(i)["w"], "b": None}
    u1, s1 = ours.update(grads, s1, PARAMS)
    u2, s2 = theirs.update(grads, s2, PARAMS)
    assert u1["b"] is None and u2["b"] is None
    np.testing.assert_array_equal(u1["w"], u2["w"])


def test_none_params_get_no_state():
  params = {"w": PARAMS["w"], "unused": None}
  tx = optax_rmsprop.rmsprop(0.01, centered=True, momentum=0.9)
  state = tx.init(params)
  assert state[0].nu["unused"] is None and state[2].trace["unused"] is None
  updates, _ = jax.jit(tx.update)({"w": PARAMS["w"], "unused": None}, state,
                                  params)
  assert updates["unused"] is None
  with pytest.raises(ValueError, match=r"\['unused'\].*None"):
    tx.update({"w": PARAMS["w"], "unused": PARAMS["b"]}, state, params)


# --- 3. State interchange with optax ----------------------------------------

@pytest.mark.parametrize("name", SHARED)
def test_same_state_pytree_as_optax(name):
  ours = optax_rmsprop.rmsprop(**SHARED[name]).init(PARAMS)
  theirs = optax.rmsprop(**SHARED[name]).init(PARAMS)
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  assert [type(s) for s in ours] == [type(s) for s in theirs]


@pytest.mark.parametrize("direction", ["optax_to_ours", "ours_to_optax"])
@pytest.mark.parametrize("name", SHARED)
def test_state_continues_across_implementations(name, direction):
  """4 steps in one, 4 more in the other == 8 in the first, bitwise."""
  ours, theirs = optax_rmsprop.rmsprop(**SHARED[name]), optax.rmsprop(
      **SHARED[name])
  first, second = (theirs, ours) if direction == "optax_to_ours" else (
      ours, theirs)
  params, state = steps(first, first.init(PARAMS), PARAMS, 0, 4)
  switched = steps(second, state, params, 4, 4)
  uninterrupted = steps(first, state, params, 4, 4)
  assert_trees_equal(switched, uninterrupted)


@pytest.mark.parametrize("name", ["plain", "everything"])
def test_optax_orbax_checkpoint_restores_into_our_target(tmp_path, name):
  theirs = optax.rmsprop(**SHARED[name])
  ours = optax_rmsprop.rmsprop(**SHARED[name])
  params, state = steps(theirs, theirs.init(PARAMS), PARAMS, 0, 4)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", {"params": params, "opt_state": state})
  checkpointer.wait_until_finished()
  target = jax.eval_shape(
      lambda p: {"params": p, "opt_state": ours.init(p)}, PARAMS)
  restored = checkpointer.restore(tmp_path / "ckpt", target)
  resumed = steps(ours, restored["opt_state"], restored["params"], 4, 4)
  assert_trees_equal(resumed, steps(theirs, state, params, 4, 4))


def test_flax_serialization_and_pickle_across_implementations():
  theirs = optax.rmsprop(**SHARED["everything"])
  ours = optax_rmsprop.rmsprop(**SHARED["everything"])
  params, state = steps(theirs, theirs.init(PARAMS), PARAMS, 0, 3)
  # flax.serialization: optax's bytes into our target (and back).
  restored = serialization.from_bytes(
      ours.init(PARAMS), serialization.to_bytes(state))
  assert_trees_equal(restored, state)
  back = serialization.from_bytes(
      theirs.init(PARAMS), serialization.to_bytes(restored))
  assert_trees_equal(back, state)
  # An unpickled optax state goes straight into our update.
  unpickled = pickle.loads(pickle.dumps(jax.device_get(state)))
  assert_trees_equal(
      steps(ours, unpickled, params, 3, 2), steps(theirs, state, params, 3, 2))


@pytest.mark.parametrize("name", SHARED)
def test_optax_state_utilities_see_the_same_state(name):
  ours = optax_rmsprop.rmsprop(**SHARED[name])
  theirs = optax.rmsprop(**SHARED[name])
  s1 = steps(ours, ours.init(PARAMS), PARAMS, 0, 2)[1]
  s2 = steps(theirs, theirs.init(PARAMS), PARAMS, 0, 2)[1]
  for key in ("nu", "mu", "trace", "count"):
    try:
      want = optax.tree_utils.tree_get(s2, key)
    except KeyError as e:  # e.g. two counts (schedule + bias correction)
      with pytest.raises(KeyError, match=str(e.args[0])[:30]):
        optax.tree_utils.tree_get(s1, key)
      continue
    assert_trees_equal(optax.tree_utils.tree_get(s1, key), want)
  set1 = optax.tree_utils.tree_set(s1, nu=jax.tree.map(jnp.ones_like,
                                                       PARAMS))
  set2 = optax.tree_utils.tree_set(s2, nu=jax.tree.map(jnp.ones_like,
                                                       PARAMS))
  assert_trees_equal(set1, set2)
  mapped = lambda tx, s: optax.tree_map_params(
      tx, lambda p: p * 2, s, transform_non_params=lambda x: x)
  assert_trees_equal(mapped(ours, s1), mapped(theirs, s2))


def test_step_count_via_tree_get():
  """The pattern public code uses to read the step."""
  tx = optax_rmsprop.rmsprop(optax.linear_schedule(0.1, 0.0, 10))
  state = steps(tx, tx.init(PARAMS), PARAMS, 0, 3)[1]
  assert int(optax.tree_utils.tree_get(state, "count")) == 3


# --- 4. No recompilation when the transform is rebuilt ----------------------

@pytest.mark.parametrize("mode", ["fresh", "inject_static"])
def test_rebuilt_transform_compiles_nothing_after_warm_up(mode):
  kwargs = dict(centered=True, momentum=0.9, bias_correction=True)
  if mode == "fresh":
    make = lambda: optax_rmsprop.rmsprop(1e-2, **kwargs)
  else:
    injected = optax.inject_hyperparams(
        optax_rmsprop.rmsprop, static_args=("decay", "eps"))(
            learning_rate=1e-2, decay=0.9, eps=1e-8, **kwargs)
    make = lambda: injected
  state = make().init(PARAMS)
  _, state = make().update(grads_at(0), state, PARAMS)  # warm-up

  def more():
    s = state
    for i in range(1, 4):
      _, s = make().update(grads_at(i), s, PARAMS)

  assert not compiles_during(more)


# --- 5. Inputs optax accepts; clear errors for those it should not ---------

def test_numpy_arrays_and_python_scalars_like_optax():
  params = {"w": np.asarray(PARAMS["w"]), "s": 0.5}
  grads = {"w": np.cos(np.asarray(PARAMS["w"])), "s": 0.25}
  for kwargs in SHARED.values():
    ours, theirs = optax_rmsprop.rmsprop(**kwargs), optax.rmsprop(**kwargs)
    u1, s1 = ours.update(grads, ours.init(params), params)
    u2, s2 = theirs.update(grads, theirs.init(params), params)
    for k in params:
      np.testing.assert_array_equal(u1[k], u2[k])
    assert_trees_equal(s1, s2)


def test_python_int_scalars_are_numbers_not_counters():
  """optax would keep an int32 ν for a Python int param (and return an
  integer-rounded update); here 2 means 2.0."""
  tx = optax_rmsprop.rmsprop(0.1, momentum=0.9)
  u_int, s_int = tx.update({"x": 1}, tx.init({"x": 2}), {"x": 2})
  u_float, s_float = tx.update({"x": 1.0}, tx.init({"x": 2.0}), {"x": 2.0})
  assert_trees_equal((u_int, s_int), (u_float, s_float))
  assert s_int[0].nu["x"].dtype == jnp.float32


def test_python_float_gradients_with_array_hyperparameters():
  """inject_hyperparams makes the hyperparameters arrays; gradients may
  still be Python floats."""
  tx = optax.inject_hyperparams(optax_rmsprop.rmsprop)(
      learning_rate=0.1, decay=0.9, momentum=0.5)
  state = tx.init({"x": 1.0})
  updates, _ = tx.update({"x": 2.0}, state, {"x": 1.0})
  np.testing.assert_allclose(updates["x"], -0.1 * 2.0 / np.sqrt(0.4 + 1e-8),
                             rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
@pytest.mark.parametrize("name", ["rmsprop", "momentum", "torch_rmsprop"])
def test_integer_and_boolean_leaves_are_refused_at_init(name, dtype):
  make = {
      "rmsprop": lambda: optax_rmsprop.rmsprop(0.1),
      "momentum": lambda: optax_rmsprop.momentum(0.9),
      "torch_rmsprop": lambda: optax_rmsprop.torch_rmsprop(),
  }[name]
  params = {"layer": {"w": PARAMS["w"], "step": jnp.zeros((), dtype)}}
  with pytest.raises(ValueError, match=r"\['layer'\]\['step'\].*optax.masked"):
    make().init(params)


def test_integer_gradient_is_refused_at_update():
  tx = optax_rmsprop.rmsprop(0.1)
  state = tx.init({"w": PARAMS["b"]})
  with pytest.raises(ValueError, match=r"\['w'\].*int32"):
    tx.update({"w": jnp.arange(4)}, state)


# (None as the whole tree is not "empty": update(g, s, None) means "no
# params", which the weight-decay transforms refuse, as optax's do.)
EMPTY_TREES = [{}, (), [], {"a": {}}]


@pytest.mark.parametrize("empty", EMPTY_TREES, ids=repr)
@pytest.mark.parametrize("name", TRANSFORMS)
def test_empty_trees(name, empty):
  tx = TRANSFORMS[name]()
  state = tx.init(empty)
  updates, new_state = jax.jit(tx.update)(empty, state, empty)
  assert jax.tree.structure(updates) == jax.tree.structure(empty)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  shardings = optax_rmsprop.tools.state_shardings(tx, empty)
  assert jax.tree.structure(
      optax_rmsprop.tools.init_sharded(tx, empty)) == jax.tree.structure(shardings)


def test_centered_none_gradient_keeps_its_mu_as_it_was():
  """A None gradient (frozen param) leaves its μ as it was, as ν: the
  documented contract (optax's own update_moment would store None)."""
  tx = optax_rmsprop.scale_by_rms(decay=0.9, centered=True)
  params = {"w": jnp.zeros(3), "b": jnp.zeros(2)}
  state = tx.init(params)
  _, state = tx.update({"w": jnp.ones(3), "b": jnp.full(2, 2.0)}, state)
  before = jax.tree.map(np.asarray, state)
  updates, state = jax.jit(tx.update)({"w": jnp.ones(3), "b": None}, state)
  assert updates["b"] is None
  np.testing.assert_array_equal(state.mu["b"], before.mu["b"])
  np.testing.assert_allclose(state.mu["b"], [0.2, 0.2], rtol=1e-6)  # (1-ρ) g
  np.testing.assert_array_equal(state.nu["b"], before.nu["b"])
  np.testing.assert_allclose(state.mu["w"], 0.19, rtol=1e-6)  # it moved
