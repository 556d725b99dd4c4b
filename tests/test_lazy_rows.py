"""`lazy_rows` around optax's and our transforms, against NumPy.

One step: every row with a nonzero gradient gets exactly what ``inner`` gives
(update and state), every other row a zero update and its old state, and
non-parameter state (counts) what ``inner`` gives. Many steps: lazy Adam
against a NumPy transcription (rows updated only when looked up, bias
correction on the global step). TF1's sparse RMSProp, which this exists for,
is tested against real TensorFlow in test_presets_tf1.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop

SHAPES = {"table": (9, 4), "vector": (7,), "scalar": (), "cube": (5, 2, 3)}


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray(rng.normal(size=s), jnp.float32)
          for k, s in SHAPES.items()}


def _sparse_grads(rng):
  """Random gradients with about half the rows of each leaf all zero."""
  grads = {}
  for k, shape in SHAPES.items():
    g = rng.normal(size=shape).astype(np.float32)
    if shape:
      g[rng.random(shape[0]) < 0.5] = 0.0
      g.reshape(shape[0], -1)[0, 0] = 0.0  # a zero entry in a live row
      g[-1] = 0.0  # at least one zero row
      g.reshape(shape[0], -1)[0, -1] = 1.0  # ... and one live row
    grads[k] = jnp.asarray(g)
  return grads


INNERS = {
    "optax.rmsprop": lambda: optax.rmsprop(0.1, momentum=0.9, centered=True),
    "optax.adam": lambda: optax.adam(0.1),
    "optax.adamw": lambda: optax.adamw(0.1, weight_decay=0.1),
    "optax.sgd": lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
    "rmsprop": lambda: optax_rmsprop.rmsprop(
        optax.exponential_decay(0.1, 1, 0.9), momentum=0.9,
        bias_correction=True, decoupled_weight_decay=0.1),
    "tf1_rmsprop": lambda: optax_rmsprop.tf1_rmsprop(0.1, momentum=0.9),
    "inject_hyperparams": lambda: optax.inject_hyperparams(optax.rmsprop)(
        learning_rate=0.1, momentum=0.9),
}


def _rows_zero(g):
  return np.all(np.asarray(g).reshape(g.shape[0], -1) == 0, axis=1)


def _check_leaf(lazy, dense, old, grad):
  """Leaf of lazy's result: dense's on live rows, ``old`` on the others."""
  lazy, dense, old = (np.asarray(x) for x in (lazy, dense, old))
  if grad.ndim == 0:  # no rows: dense
    np.testing.assert_array_equal(lazy, dense)
    return
  zero = _rows_zero(grad)
  np.testing.assert_array_equal(lazy[~zero], dense[~zero])
  np.testing.assert_array_equal(lazy[zero], old[zero])


@pytest.mark.parametrize("name,jit", [(name, True) for name in sorted(INNERS)]
                         + [("optax.adam", False), ("tf1_rmsprop", False)])
def test_one_step_is_inner_on_live_rows_and_nothing_elsewhere(name, jit):
  inner = INNERS[name]()
  lazy = optax_rmsprop.tools.lazy_rows(inner)
  rng = np.random.default_rng(1)
  params = _params()
  maybe_jit = jax.jit if jit else (lambda f: f)
  dense_update = maybe_jit(inner.update)
  # Reach a state with nonzero momentum everywhere first (dense steps).
  state = inner.init(params)
  for _ in range(2):
    grads = jax.tree.map(
        lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    _, state = dense_update(grads, state, params)
  grads = _sparse_grads(rng)
  u_lazy, s_lazy = maybe_jit(lazy.update)(grads, state, params)
  u_dense, s_dense = dense_update(grads, state, params)
  assert jax.tree.structure(s_lazy) == jax.tree.structure(s_dense)
  for k in SHAPES:
    _check_leaf(u_lazy[k], u_dense[k], jnp.zeros(SHAPES[k]), grads[k])
  # Parameter-shaped slots: live rows advance, the others keep old values.
  param_slots = optax.tree.map_params(
      inner, lambda _: True, s_dense, transform_non_params=lambda _: False)
  for is_param, lazy_leaf, dense_leaf, old_leaf, path in zip(
      jax.tree.leaves(param_slots), jax.tree.leaves(s_lazy),
      jax.tree.leaves(s_dense), jax.tree.leaves(state),
      [p for p, _ in jax.tree_util.tree_leaves_with_path(s_dense)]):
    if is_param:
      key = path[-1].key
      _check_leaf(lazy_leaf, dense_leaf, old_leaf, grads[key])
    else:  # counts, hyperparameters: as inner
      np.testing.assert_array_equal(lazy_leaf, dense_leaf)


def _numpy_lazy_adam(params, grads_per_step, lr, b1=0.9, b2=0.999, eps=1e-8):
  """Adam (optax's formula) where only rows with a nonzero gradient move;
  the bias correction follows the global step count."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  out = []
  for t, grads in enumerate(grads_per_step, start=1):
    for k, g in grads.items():
      g = np.asarray(g, np.float64)
      live = (~_rows_zero(g) if g.ndim else np.array(True))
      live = live.reshape(live.shape + (1,) * (g.ndim - live.ndim))
      m_new = b1 * m[k] + (1 - b1) * g
      v_new = b2 * v[k] + (1 - b2) * g * g
      step = lr * (m_new / (1 - b1**t)) / (np.sqrt(v_new / (1 - b2**t)) + eps)
      m[k] = np.where(live, m_new, m[k])
      v[k] = np.where(live, v_new, v[k])
      p[k] = np.where(live, p[k] - step, p[k])
    out.append({k: x.copy() for k, x in p.items()})
  return out


@pytest.mark.parametrize("jit", [True, False])
def test_lazy_adam_matches_numpy_over_many_steps(jit):
  """The float64 transcription keeps float32's rounding out of the claim."""
  rng = np.random.default_rng(2)
  params = _params()
  grads_per_step = [_sparse_grads(rng) for _ in range(40)]
  expected = _numpy_lazy_adam(params, grads_per_step, lr=0.05)
  tx = optax_rmsprop.tools.lazy_rows(optax.adam(0.05))
  update = jax.jit(tx.update) if jit else tx.update
  state = tx.init(params)
  for grads, want in zip(grads_per_step, expected):
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    for k in SHAPES:
      # float32 against float64; the effect guarded is > 1e-2 (next test)
      np.testing.assert_allclose(params[k], want[k], rtol=1e-5, atol=1e-5)
  assert int(state[0].count) == len(grads_per_step)  # global count


def test_a_zero_row_is_a_large_effect():
  """Dense Adam moves a zero row on momentum: far from lazy (the test above
  can fail)."""
  rng = np.random.default_rng(2)
  params = _params()
  grads_per_step = [_sparse_grads(rng) for _ in range(10)]
  expected = _numpy_lazy_adam(params, grads_per_step, lr=0.05)[-1]
  tx = optax.adam(0.05)
  state = tx.init(params)
  for grads in grads_per_step:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert np.max(np.abs(params["table"] - expected["table"])) > 1e-2


def test_mask_selects_the_lazy_leaves():
  params = _params()
  grads = _sparse_grads(np.random.default_rng(3))
  inner = optax.rmsprop(0.1, momentum=0.9)
  state = inner.init(params)
  _, state = inner.update(jax.tree.map(jnp.ones_like, params), state)
  mask = {"table": True, "vector": False, "scalar": True, "cube": False}
  for m in (mask, lambda updates: mask):
    u_lazy, _ = optax_rmsprop.tools.lazy_rows(inner, m).update(grads, state)
    u_dense, _ = inner.update(grads, state)
    # Masked-out leaves (and the 0-d one, which has no rows) are dense.
    for k in ("vector", "cube", "scalar"):
      np.testing.assert_array_equal(u_lazy[k], u_dense[k])
    zero = _rows_zero(grads["table"])
    assert np.all(np.asarray(u_lazy["table"])[zero] == 0)
    assert np.all(np.asarray(u_dense["table"])[zero] != 0)  # momentum


@pytest.mark.parametrize("as_function", [False, True])
def test_a_prefix_mask_is_the_full_mask(as_function):
  """Issue #17: a mask that is a tree prefix of the params (one bool for a
  whole subtree, as optax.masked takes) passed the check, then crashed at
  update; it must select what the full mask does."""
  params = {"emb": _params(1), "dense": _params(2)}
  rng = np.random.default_rng(4)
  grads = {"emb": _sparse_grads(rng), "dense": _sparse_grads(rng)}
  prefix = {"emb": True, "dense": False}
  full = {"emb": jax.tree.map(lambda _: True, params["emb"]),
          "dense": jax.tree.map(lambda _: False, params["dense"])}
  inner = optax_rmsprop.rmsprop(0.1, momentum=0.9)
  runs = []
  for mask in (prefix, full):
    tx = optax_rmsprop.tools.lazy_rows(
        inner, (lambda _, m=mask: m) if as_function else mask)
    state = tx.init(params)
    for g in (jax.tree.map(jnp.ones_like, grads), grads):
      updates, state = jax.jit(tx.update)(g, state, params)
    runs.append((updates, state))
  jax.tree.map(np.testing.assert_array_equal, *runs)
  zero = _rows_zero(grads["emb"]["table"])
  assert np.all(np.asarray(runs[0][0]["emb"]["table"])[zero] == 0)
  zero = _rows_zero(grads["dense"]["table"])
  assert np.all(np.asarray(runs[0][0]["dense"]["table"])[zero] != 0)  # β m


def test_none_gradient_leaves_pass_through():
  params = {"a": jnp.ones((4, 3)), "b": jnp.ones(2)}
  tx = optax_rmsprop.tools.lazy_rows(optax_rmsprop.rmsprop(0.1, momentum=0.9))
  state = tx.init(params)
  grads = {"a": jnp.ones((4, 3)).at[1].set(0.0), "b": None}
  updates, new_state = jax.jit(tx.update)(grads, state, params)
  assert updates["b"] is None
  np.testing.assert_array_equal(updates["a"][1], 0.0)
  nu = optax.tree.get(new_state, "nu")
  np.testing.assert_array_equal(nu["b"], optax.tree.get(state, "nu")["b"])


def test_nan_in_a_row_is_not_hidden():
  params = jnp.ones((3, 2))
  tx = optax_rmsprop.tools.lazy_rows(optax.rmsprop(0.1))
  grads = jnp.zeros((3, 2)).at[2, 0].set(jnp.nan)
  updates, _ = tx.update(grads, tx.init(params))
  assert np.all(np.isnan(updates[2, 0]))
  np.testing.assert_array_equal(updates[:2], 0.0)


def test_non_elementwise_inner_is_rejected():
  """A factored second moment has no per-row state to keep."""
  tx = optax_rmsprop.tools.lazy_rows(optax.adafactor(0.1, min_dim_size_to_factor=2))
  params = {"a": jnp.ones((4, 3))}
  with pytest.raises(ValueError, match="elementwise"):
    tx.update({"a": jnp.ones((4, 3)).at[1].set(0.0)}, tx.init(params), params)
