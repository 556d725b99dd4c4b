"""`tf1_rmsprop` against trajectories recorded with real TensorFlow.

tests/data/tf1_rmsprop.npz was written by tools/generate_tf1_reference.py
(TensorFlow 2.21 CPU, ``tf.compat.v1.train.RMSPropOptimizer``, eager) on the
shared problem; it keeps every 10th step of 500. The NumPy transcription of
TF's kernels reproduces it bit for bit; the preset, which uses the weighted
EMA form rather than TF's increment form, to a relative 2.6e-6 at worst
(centered, where ν - μ² cancels digits).

tests/data/tf1_rmsprop_sparse.npz (same tool) holds sparse updates: an
embedding table with ``IndexedSlices`` gradients next to a dense variable
(tests/reference/embedding_problem.py), 300 steps, every 5th kept, and the
final slots. TF's own ``testSparse`` is ported as well.
"""

import inspect
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop
from reference import embedding_problem
from reference import problem
from reference import runner
from reference import tf1_rmsprop as tf1_reference

DATA = np.load(pathlib.Path(__file__).parent / "data" / "tf1_rmsprop.npz")
META = json.loads(str(DATA["meta"]))
CONFIGS = META["configs"]
EVERY = META["every"]
TOLERANCE = 1e-5


def optax_schedule(schedule):
  kind, lr = schedule[0], schedule[1]
  if kind == "constant":
    return lr
  if kind == "drop":
    return optax.piecewise_constant_schedule(lr, {schedule[2]: schedule[3]})
  if kind == "exponential":
    return optax.exponential_decay(lr, 1, schedule[2])
  raise ValueError(kind)


def python_schedule(schedule):
  kind, lr = schedule[0], schedule[1]
  if kind == "constant":
    return lr
  if kind == "drop":
    return lambda t: lr if t < schedule[2] else lr * schedule[3]
  if kind == "exponential":
    return lambda t: lr * schedule[2] ** t
  raise ValueError(kind)


def test_data_covers_the_configurations():
  assert META["steps"] >= 500
  assert set(CONFIGS) >= {"plain", "momentum", "centered",
                          "centered_momentum", "momentum_lr_drop"}
  for name in CONFIGS:
    assert DATA[name].shape == (META["steps"] // EVERY + 1, 50)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_tensorflow(name):
  config = CONFIGS[name]
  tx = optax_rmsprop.tf1_rmsprop(optax_schedule(config["schedule"]),
                            **config["kwargs"])
  actual = runner.run_optax(tx, steps=META["steps"])[::EVERY]
  deviation = problem.max_relative_deviation(actual, DATA[name])
  print(f"tf1 {name}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_numpy_reference_matches_tensorflow(name):
  config = CONFIGS[name]
  reference = problem.run_reference(
      tf1_reference.RMSprop(50, **config["kwargs"]),
      python_schedule(config["schedule"]), steps=META["steps"])[::EVERY]
  deviation = problem.max_relative_deviation(reference, DATA[name])
  print(f"tf1 reference {name}: max rel dev {deviation:.2e}")
  # Bit-exact where recorded; the float64 libm behind the gradient may round
  # differently elsewhere.
  assert deviation <= 1e-6


def test_a_wrong_convention_is_caught():
  """PyTorch's ν₀ = 0 instead of TF1's 1 is far off the recorded data."""
  config = CONFIGS["plain"]
  tx = optax_rmsprop.rmsprop(config["schedule"][1], eps=1e-10,
                            initial_scale=0.0)
  actual = runner.run_optax(tx, steps=META["steps"])[::EVERY]
  assert problem.max_relative_deviation(actual, DATA["plain"]) > 1e-3


# --- Sparse updates (embedding tables) ---------------------------------------
#
# TF1 updates only the rows an IndexedSlices gradient indexes; the preset with
# ``sparse=`` (lazy_rows) leaves the rows whose gradient is all zero alone.

# TF's own testSparse (tensorflow/python/training/rmsprop_test.py): its
# parameter grid, two 2-element variables each getting one indexed entry,
# 4 steps, its NumPy reference and assertAllCloseAccordingToType tolerances.
TF_TEST_PARAMS = [
    # learning_rate, decay, momentum, epsilon, centered
    (0.5, 0.9, 0.0, 1e-3, True),
    (0.5, 0.9, 0.0, 1e-3, False),
    (0.1, 0.9, 0.0, 1e-3, True),
    (0.5, 0.95, 0.0, 1e-3, False),
    (0.5, 0.95, 0.0, 1e-5, True),
    (0.5, 0.95, 0.9, 1e-5, True),
]
TF_TOLERANCE = {np.float16: 1e-3, np.float32: 1e-6}


def _tf_sparse_rmsprop_update_numpy(var, gindexs, gvalues, mg, rms, mom, lr,
                                    decay, momentum, epsilon, centered):
  """TF's ``_sparse_rmsprop_update_numpy``, transcribed."""
  mg_t, rms_t, mom_t, var_t = mg.copy(), rms.copy(), mom.copy(), var.copy()
  for gindex, gvalue in zip(gindexs, gvalues):
    rms_t[gindex] = rms[gindex] * decay + (1 - decay) * gvalue * gvalue
    denom_t = rms_t[gindex] + epsilon
    if centered:
      mg_t[gindex] = mg_t[gindex] * decay + (1 - decay) * gvalue
      denom_t -= mg_t[gindex] * mg_t[gindex]
    mom_t[gindex] = momentum * mom[gindex] + lr * gvalue / np.sqrt(denom_t)
    var_t[gindex] = var[gindex] - mom_t[gindex]
  return var_t, mg_t, rms_t, mom_t


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("lr,decay,momentum,epsilon,centered", TF_TEST_PARAMS)
def test_tensorflow_test_sparse(dtype, lr, decay, momentum, epsilon, centered):
  var = {"var0": np.array([1.0, 2.0], dtype),
         "var1": np.array([3.0, 4.0], dtype)}
  indices = {"var0": np.array([0]), "var1": np.array([1])}
  values = {"var0": np.array([0.1], dtype), "var1": np.array([0.01], dtype)}
  grads = {k: jnp.zeros(2, dtype).at[indices[k]].set(values[k]) for k in var}
  tx = optax_rmsprop.tf1_rmsprop(lr, decay, momentum, epsilon, centered,
                                 sparse=True)
  step = jax.jit(tx.update)
  params = jax.tree.map(jnp.asarray, var)
  state = tx.init(params)
  expected = {k: (var[k], np.zeros(2, dtype), np.ones(2, dtype),
                  np.zeros(2, dtype)) for k in var}
  tolerance = TF_TOLERANCE[dtype]
  for _ in range(4):
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    for k in var:
      expected[k] = _tf_sparse_rmsprop_update_numpy(
          expected[k][0], indices[k], values[k], *expected[k][1:], lr, decay,
          momentum, epsilon, centered)
      var_np, mg_np, rms_np, mom_np = expected[k]
      actual = {"var": params[k], "rms": optax.tree.get(state, "nu")[k]}
      if centered:
        actual["mg"] = optax.tree.get(state, "mu")[k]
      if momentum:  # the buffer holds -mom; TF keeps a slot even without
        actual["mom"] = -optax.tree.get(state, "trace")[k]
      desired = {"var": var_np, "rms": rms_np, "mg": mg_np, "mom": mom_np}
      for name, value in actual.items():
        assert value.dtype == dtype
        np.testing.assert_allclose(
            np.asarray(value, np.float32), desired[name].astype(np.float32),
            rtol=tolerance, atol=tolerance, err_msg=f"{k} {name}")
      # The entry not indexed is exactly as it started.
      untouched = 1 - indices[k][0]
      assert params[k][untouched] == var[k][untouched]
      assert actual["rms"][untouched] == 1


SPARSE = np.load(pathlib.Path(__file__).parent / "data" /
                 "tf1_rmsprop_sparse.npz")
SPARSE_META = json.loads(str(SPARSE["meta"]))
SPARSE_CONFIGS = SPARSE_META["configs"]
SPARSE_EVERY = SPARSE_META["every"]
TABLE_ONLY = {"table": True, "w": False}  # what TF updates sparsely


def run_optax_sparse(tx, steps=embedding_problem.STEPS):
  """Flat trajectory and final state of ``tx`` on the embedding problem."""

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  host = embedding_problem.initial_params()
  params = jax.tree.map(jnp.asarray, host)
  state = tx.init(params)
  trajectory = [embedding_problem.flatten(host)]
  for t in range(steps):
    indices, values, g_w = embedding_problem.gradient(host, t)
    grads = {"table": embedding_problem.dense(indices, values), "w": g_w}
    params, state = step(params, state, grads)
    host = jax.device_get(params)
    trajectory.append(embedding_problem.flatten(host))
  return np.stack(trajectory), state


def run_reference_sparse(config):
  kwargs, lr = config["kwargs"], python_schedule(config["schedule"])
  table = tf1_reference.RMSprop(embedding_problem.SHAPES["table"], **kwargs)
  w = tf1_reference.RMSprop(embedding_problem.SHAPES["w"], **kwargs)
  host = embedding_problem.initial_params()
  trajectory = [embedding_problem.flatten(host)]
  for t in range(embedding_problem.STEPS):
    lr_t = lr(t) if callable(lr) else lr
    indices, values, g_w = embedding_problem.gradient(host, t)
    host = {"table": table.sparse_step(host["table"], indices, values, lr_t),
            "w": w.step(host["w"], g_w, lr_t)}
    trajectory.append(embedding_problem.flatten(host))
  return np.stack(trajectory)


def _sparse_preset(config, sparse=TABLE_ONLY):
  return optax_rmsprop.tf1_rmsprop(
      optax_schedule(config["schedule"]), **config["kwargs"], sparse=sparse)


def test_sparse_data_covers_the_configurations():
  assert set(SPARSE_CONFIGS) >= {"plain", "momentum", "centered",
                                 "centered_momentum", "momentum_lr_drop"}
  rows = SPARSE_META["steps"] // SPARSE_EVERY + 1
  for name in SPARSE_CONFIGS:
    assert SPARSE[name].shape == (rows, 95)


@pytest.mark.parametrize("name", sorted(SPARSE_CONFIGS))
def test_sparse_matches_tensorflow(name):
  config = SPARSE_CONFIGS[name]
  trajectory, state = run_optax_sparse(_sparse_preset(config))
  deviation = problem.max_relative_deviation(
      trajectory[::SPARSE_EVERY], SPARSE[name])
  print(f"tf1 sparse {name}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE
  # The slots too: rms, mg, and the momentum buffer (ours holds -momentum).
  slots = {"rms": optax.tree.get(state, "nu")}
  if config["kwargs"].get("centered"):
    slots["mg"] = optax.tree.get(state, "mu")
  if config["kwargs"].get("momentum"):
    slots["momentum"] = jax.tree.map(
        lambda m: -m, optax.tree.get(state, "trace"))
  for slot, value in slots.items():
    recorded = SPARSE[f"{name}_{slot}"]
    error = np.max(np.abs(embedding_problem.flatten(jax.device_get(value))
                          - recorded)) / np.max(np.abs(recorded))
    print(f"  {slot}: max deviation {error:.2e} of its largest value")
    assert error <= TOLERANCE, slot


def test_untouched_rows_stay_exactly_as_they_started():
  """Rows never looked up: values, rms = 1, momentum = 0, bit for bit."""
  never = slice(embedding_problem.USED, embedding_problem.ROWS)
  trajectory, state = run_optax_sparse(
      _sparse_preset(SPARSE_CONFIGS["centered_momentum"]))
  table0 = embedding_problem.initial_params()["table"]
  rows = embedding_problem.ROWS * embedding_problem.DIM
  for recorded in (SPARSE["centered_momentum"], trajectory):
    final = recorded[-1, :rows].reshape(table0.shape)
    np.testing.assert_array_equal(final[never], table0[never])
  for slot, start in (("rms", 1), ("mg", 0), ("momentum", 0)):
    recorded = SPARSE[f"centered_momentum_{slot}"][:rows]
    np.testing.assert_array_equal(
        recorded.reshape(table0.shape)[never], start)
  np.testing.assert_array_equal(optax.tree.get(state, "nu")["table"][never], 1)
  np.testing.assert_array_equal(optax.tree.get(state, "mu")["table"][never], 0)
  np.testing.assert_array_equal(
      optax.tree.get(state, "trace")["table"][never], 0)


@pytest.mark.parametrize("name", sorted(SPARSE_CONFIGS))
def test_numpy_sparse_reference_matches_tensorflow(name):
  reference = run_reference_sparse(SPARSE_CONFIGS[name])[::SPARSE_EVERY]
  deviation = problem.max_relative_deviation(reference, SPARSE[name])
  print(f"tf1 sparse reference {name}: max rel dev {deviation:.2e}")
  assert deviation <= 1e-6


@pytest.mark.parametrize("sparse", [False, True])
def test_sparse_wrong_variables_are_caught(sparse):
  """Dense updates of the table, or lazy ones of the dense ``w`` (whose
  zero row TF decays), are far off the recorded data."""
  config = SPARSE_CONFIGS["momentum"]
  trajectory, _ = run_optax_sparse(_sparse_preset(config, sparse=sparse))
  deviation = problem.max_relative_deviation(
      trajectory[::SPARSE_EVERY], SPARSE["momentum"])
  assert deviation > 1e-3


def test_sparse_mask_may_be_a_function():
  config = SPARSE_CONFIGS["centered"]
  by_tree, _ = run_optax_sparse(_sparse_preset(config), steps=20)
  by_function, _ = run_optax_sparse(
      _sparse_preset(config, lambda g: {"table": True, "w": False}), steps=20)
  np.testing.assert_array_equal(by_function, by_tree)


def test_a_looked_up_row_with_zero_gradient_is_the_one_difference():
  """TF updates an indexed row even if its gradient is 0 (its rms decays);
  a dense JAX gradient cannot tell that row from one not looked up."""
  table = embedding_problem.initial_params()["table"]
  grads = np.zeros_like(table)
  grads[0] = -1.0  # row 13 "looked up" with a zero gradient: all zero here
  tx = optax_rmsprop.tf1_rmsprop(0.01, momentum=0.9, sparse=True)
  updates, state = tx.update(jnp.asarray(grads), tx.init(jnp.asarray(table)))
  rms = np.asarray(optax.tree.get(state, "nu"))
  tf_rms = SPARSE["zero_lookup_rms"]
  np.testing.assert_array_equal(np.delete(rms, 13, 0),
                                np.delete(tf_rms, 13, 0))
  np.testing.assert_array_equal(rms[13], 1.0)
  np.testing.assert_allclose(tf_rms[13], 0.9, rtol=1e-7)
  np.testing.assert_allclose(
      np.asarray(optax.apply_updates(jnp.asarray(table), updates)),
      SPARSE["zero_lookup_table"], rtol=1e-7)


def test_sparse_prefix_mask():
  """Issue #17: ``sparse`` with one bool per subtree (a tree prefix of the
  params, as optax.masked takes) passed the check, then crashed at update;
  it must update what the same mask written out per leaf does."""
  params = {"emb": {"table": jnp.ones((5, 3)), "pos": jnp.ones((4, 3))},
            "dense": {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}}
  grads = {"emb": {"table": jnp.zeros((5, 3)).at[1].set(0.5),
                   "pos": jnp.zeros((4, 3)).at[0].set(-1.0)},
           "dense": {"w": jnp.zeros((3, 2)).at[2].set(2.0),
                     "b": jnp.ones(2)}}
  prefix = {"emb": True, "dense": False}
  full = {"emb": {"table": True, "pos": True},
          "dense": {"w": False, "b": False}}
  runs = []
  for sparse in (prefix, full):
    tx = optax_rmsprop.tf1_rmsprop(0.1, momentum=0.9, sparse=sparse)
    state = tx.init(params)
    for _ in range(3):
      updates, state = jax.jit(tx.update)(grads, state, params)
    runs.append((updates, state))
  jax.tree.map(np.testing.assert_array_equal, *runs)
  assert np.all(np.asarray(runs[0][0]["emb"]["table"])[0] == 0)  # lazy
  assert np.all(np.asarray(runs[0][0]["dense"]["w"])[0] == 0)  # zero grad
  nu = optax.tree.get(runs[0][1], "nu")
  assert np.all(np.asarray(nu["emb"]["table"])[0] == 1)  # kept at nu_0
  assert np.all(np.asarray(nu["dense"]["w"])[0] < 1)  # dense: decayed


# TF1's tf.compat.v1.train.RMSPropOptimizer.__init__ (TensorFlow's
# python/training/rmsprop.py; TF is not a test dependency), after
# learning_rate: decay=0.9, momentum=0.0, epsilon=1e-10, use_locking=False,
# centered=False, name="RMSProp".
TF1_DEFAULTS = {
  "decay": 0.9,
  "momentum": 0.0,
  "epsilon": 1e-10,
  "centered": False,
}


def test_tf1_preset_defaults_equal_tf1_signature_defaults():
  ours = inspect.signature(optax_rmsprop.tf1_rmsprop).parameters
  assert {k: ours[k].default for k in TF1_DEFAULTS} == TF1_DEFAULTS


def test_tf1_default_epsilon_matters_once_nu_has_decayed():
  """TF1 starts ν at 1, so ε matters only once ν has decayed: 200 steps of
  |g| ~ 1e-6 leave ν ~ 0.9^200 ≈ 7e-10, where ε = 1e-10 and 1e-7 differ
  by a factor ~10 in the step."""
  from numpy_reference import Config  # noqa: PLC0415
  from numpy_reference import NumpyRMSprop  # noqa: PLC0415

  rng = np.random.default_rng(2)
  grads = (rng.normal(size=(200, 4)) * 1e-6).astype(np.float32)
  tx = optax_rmsprop.tf1_rmsprop(1.0)
  ref = NumpyRMSprop(
    Config(learning_rate=1.0, decay=0.9, eps=1e-10, initial_scale=1.0),
    np.zeros(4),
  )
  p, q = jnp.zeros(4), np.zeros(4)
  state = tx.init(p)
  step = jax.jit(tx.update)
  for g in grads:
    updates, state = step(jnp.asarray(g), state, p)
    p = optax.apply_updates(p, updates)
    q = ref.step(q, g.astype(np.float64))
  last = ref.step(q, grads[-1].astype(np.float64)) - q  # a late step's size
  assert np.all(np.abs(last) > 1e-2)  # ε = 1e-7 would give ~3e-3
  np.testing.assert_allclose(np.asarray(p), q, rtol=1e-4)
