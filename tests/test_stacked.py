"""`stack_leaves` changes the layout of the state, never the numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop


def _tree():
  rng = np.random.default_rng(0)
  normal = lambda *s: rng.normal(size=s).astype(np.float32)
  return {
      # Five (3, 4) float32 leaves, split into groups of 2, 2, 1 below.
      "layers": [{"w": normal(3, 4), "b": normal(4)} for _ in range(5)],
      "head": normal(4, 2),
      "scale": np.float32(0.7),  # a scalar leaf
      "half": normal(3, 4).astype(jnp.bfloat16),  # same shape, other dtype
  }


def _run(tx, params, steps=6):
  """A training loop: a jitted update + apply per step, varying gradients.

  Gradients come in as arrays, as from a separately compiled backward pass.
  Computed inside the same jit, XLA on CPU may fuse them into the update and
  contract ``a * b + c`` into an FMA differently for stacked and per-leaf
  arrays: an ulp of difference that has nothing to do with the layout's math.
  """

  @jax.jit
  def step(params, state, grads):
    u, state = tx.update(grads, state, params)
    return optax.apply_updates(params, u), state

  state = tx.init(params)
  for i in range(steps):
    c = 1.5 - i % 3  # sign flips and varying size
    grads = jax.tree.map(lambda x: (x * c).astype(x.dtype), params)
    params, state = step(params, state, grads)
  return params, state


def assert_same_up_to_fma(got, want):
  """Equal, up to a couple of ulps where XLA contracts an FMA differently.

  XLA:CPU may contract ``a * b + c`` into an FMA in one layout's fusion and
  not the other's (observed: 1 ulp in 1 element after 6 steps, torch-like
  config); any error in the stacking itself would be far larger.
  """
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    if g.dtype in (np.float32, np.float64):
      np.testing.assert_array_max_ulp(np.asarray(g), np.asarray(w), maxulp=2)
    else:
      np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


CONFIGS = {
    "plain": dict(learning_rate=0.01),
    "centered-nesterov": dict(
        learning_rate=0.01, centered=True, momentum=0.9, nesterov=True
    ),
    "torch-like": dict(
        learning_rate=optax.exponential_decay(0.02, 3, 0.5),
        eps_in_sqrt=False,
        bias_correction=True,
        momentum=0.5,
        lr_in_momentum=False,
        coupled_weight_decay=0.01,
        decoupled_weight_decay=0.1,
    ),
    "bf16-state": dict(
        learning_rate=0.01, centered=True, nu_dtype=jnp.bfloat16,
        momentum=0.9, momentum_dtype=jnp.bfloat16,
    ),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("max_group_size, max_leaf_size", [(2, 64), (32, 4)])
def test_identical_to_default_layout(name, max_group_size, max_leaf_size):
  params = _tree()
  kwargs = CONFIGS[name]
  want_p, want_s = _run(optax_rmsprop.rmsprop(**kwargs), params)
  got_p, got_s = _run(
      optax_rmsprop.tools.stack_leaves(
          optax_rmsprop.rmsprop(**kwargs), max_group_size, max_leaf_size
      ),
      params,
  )
  assert_same_up_to_fma(got_p, want_p)
  dtypes = lambda t: [x.dtype for x in jax.tree.leaves(t)]
  assert dtypes(got_p) == dtypes(want_p)
  # Same state, just regrouped: same bytes, same multiset of values.
  nbytes = lambda t: sum(x.nbytes for x in jax.tree.leaves(t))
  assert nbytes(got_s) == nbytes(want_s)
  assert not np.allclose(got_p["head"], params["head"])


def test_equal_to_optax_rmsprop():
  """An outside reference: optax.rmsprop on the unstacked tree."""
  params = _tree()
  del params["half"]  # optax keeps bf16 state; ours computes it in f32
  kwargs = dict(learning_rate=0.01, centered=True, momentum=0.9)
  want, _ = _run(optax.rmsprop(**kwargs), params)
  got, _ = _run(optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(**kwargs)), params)
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_groups_by_shape_and_dtype():
  tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1), max_group_size=2)
  nu = tx.init(_tree()).inner_state[0].nu
  shapes = sorted((x.shape, str(x.dtype)) for x in nu)
  assert shapes == sorted([
      ((2, 3, 4), "float32"), ((2, 3, 4), "float32"), ((1, 3, 4), "float32"),
      ((2, 4), "float32"), ((2, 4), "float32"), ((1, 4), "float32"),
      ((1, 4, 2), "float32"), ((1,), "float32"), ((1, 3, 4), "bfloat16"),
  ])


def test_large_leaves_stay_alone_and_cost_no_copy():
  tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1), max_leaf_size=4)
  nu = tx.init(_tree()).inner_state[0].nu
  sizes = sorted((x.shape, str(x.dtype)) for x in nu)
  assert sizes == sorted(
      [((5, 4), "float32")]  # the five biases (4 elements) still stacked
      + [((1, 3, 4), "float32")] * 5 + [((1, 4, 2), "float32"),
         ((1,), "float32"), ((1, 3, 4), "bfloat16")]
  )
  # Stacking a single leaf is a reshape: no concatenate, no copy compiled.
  params = {"a": jnp.ones((300, 300)), "b": jnp.ones((300, 300))}
  tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1))  # default: 65536 elements
  state = tx.init(params)

  def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  hlo = jax.jit(step).lower(params, state, params).compile().as_text()
  assert "concatenate" not in hlo and " copy(" not in hlo


def test_mask_outside_the_wrapper():
  params = _tree()
  mask = jax.tree.map(lambda x: x.ndim > 1, params)
  inner = optax_rmsprop.rmsprop(0.01, momentum=0.9)
  want, _ = _run(optax.masked(inner, mask), params)
  got, _ = _run(optax.masked(optax_rmsprop.tools.stack_leaves(inner), mask), params)
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_mismatched_gradient_tree_raises():
  tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1))
  state = tx.init({"a": jnp.ones(3), "b": jnp.ones(3)})
  with pytest.raises(ValueError, match="optimizer state"):
    tx.update({"a": jnp.ones(3)}, state)


def test_mixed_precision_groups_come_from_the_params():
  """bfloat16 params with float32 gradients: the groups fixed at init (by
  the params' dtype) are used, updates keep the gradients' dtype, and the
  numbers equal the unstacked transform's."""
  params = {
      "w1": jnp.ones((3, 4), jnp.bfloat16),
      "w2": jnp.full((3, 4), 2.0, jnp.bfloat16),
      "w3": jnp.ones((3, 4), jnp.float32),
  }
  grads = jax.tree.map(lambda p: jnp.cos(p.astype(jnp.float32)), params)
  inner = optax_rmsprop.rmsprop(0.1, centered=True, momentum=0.9)
  tx = optax_rmsprop.tools.stack_leaves(inner)
  state = tx.init(params)
  assert [g.indices for g in state.groups] == [(0, 1), (2,)]
  updates, state2 = jax.jit(tx.update)(grads, state, params)
  assert state2.groups == state.groups
  want, _ = jax.jit(inner.update)(grads, inner.init(params), params)
  for k in params:
    assert updates[k].dtype == jnp.float32
    np.testing.assert_array_max_ulp(
        np.asarray(updates[k]), np.asarray(want[k]), maxulp=2
    )


def test_none_gradients_keep_their_rows():
  """A None gradient in a stacked group: None update, its state rows as
  they were, the other members updated exactly as without stacking."""
  params = {"a": jnp.ones(3), "b": jnp.full(3, 2.0), "c": jnp.ones(3)}
  inner = optax_rmsprop.rmsprop(0.1, centered=True, momentum=0.9)
  tx = optax_rmsprop.tools.stack_leaves(inner)
  state = tx.init(params)
  g1 = {"a": jnp.full(3, 0.5), "b": jnp.full(3, -1.0), "c": jnp.full(3, 3.0)}
  _, state = tx.update(g1, state, params)
  _, ref_state = inner.update(g1, inner.init(params), params)
  g2 = {"a": jnp.full(3, 2.0), "b": None, "c": jnp.full(3, 1.0)}
  updates, new_state = jax.jit(tx.update)(g2, state, params)
  want, ref_new = inner.update(g2, ref_state, params)
  assert updates["b"] is None and want["b"] is None
  for k in ("a", "c"):
    np.testing.assert_array_max_ulp(updates[k], want[k], maxulp=2)
  nu = new_state.inner_state[0].nu[0]  # the group (a, b, c)
  old_nu = state.inner_state[0].nu[0]
  np.testing.assert_array_equal(nu[1], old_nu[1])  # b untouched
  assert not np.allclose(nu[0], old_nu[0])  # a updated
  np.testing.assert_array_equal(
      new_state.inner_state[2].trace[0][1], state.inner_state[2].trace[0][1]
  )
  np.testing.assert_array_max_ulp(nu[0], ref_new[0].nu["a"], maxulp=2)


def test_tree_map_params_says_why_it_cannot_see_stacked_state():
  tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1))
  state = tx.init({"a": jnp.ones(3)})
  with pytest.raises(TypeError, match="stack_leaves.*state_shardings"):
    optax.tree_map_params(tx, lambda x: x, state)


def test_empty_and_none_params():
  tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1, momentum=0.9))
  state = tx.init({})
  updates, _ = tx.update({}, state, {})
  assert updates == {}
  state = tx.init({"a": jnp.ones(2), "frozen": None})
  updates, _ = tx.update({"a": jnp.ones(2), "frozen": None}, state)
  assert updates["frozen"] is None and updates["a"].shape == (2,)


@pytest.mark.parametrize("inner", ["lazy_rows", "tf1_sparse"])
def test_lazy_rows_inside_judges_each_params_rows(inner):
  """Issue #17: stack_leaves(lazy_rows(tx)) was silently not lazy: rows were
  judged along the stacking axis (a whole leaf), so a zero row of a table
  still decayed and coasted on momentum. The rows are each param's own."""
  make = {
      "lazy_rows": lambda: optax_rmsprop.tools.lazy_rows(
          optax_rmsprop.rmsprop(0.1, momentum=0.9, centered=True)),
      "tf1_sparse": lambda: optax_rmsprop.tf1_rmsprop(
          0.1, momentum=0.9, sparse=True),
  }[inner]
  rng = np.random.default_rng(0)
  params = {f"t{i}": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
            for i in range(3)}
  params["s"] = jnp.float32(0.5)  # no rows: dense

  def grads(t):
    g = {k: np.asarray(rng.normal(size=np.shape(v)), np.float32)
         for k, v in params.items()}
    for k in ("t0", "t1", "t2"):
      g[k][rng.random(5) < 0.5] = 0.0
      g[k][(t + int(k[1])) % 5] = 0.0  # a zero row in every table
    return g

  all_grads = [jax.tree.map(jnp.ones_like, params)] + [
      grads(t) for t in range(4)]
  runs = []
  for tx in (make(), optax_rmsprop.tools.stack_leaves(make())):
    state = tx.init(params)
    history = []
    for g in all_grads:
      updates, state = jax.jit(tx.update)(g, state, params)
      history.append(updates)
    runs.append(history)
  for t, (lazy, stacked, g) in enumerate(zip(*runs, all_grads)):
    assert_same_up_to_fma(stacked, lazy)
    for k in ("t0", "t1", "t2") if t else ():
      zero = np.all(g[k] == 0, axis=1)
      assert zero.any()
      np.testing.assert_array_equal(np.asarray(stacked[k])[zero], 0.0)


def test_lazy_rows_around_stack_leaves_says_to_swap_them():
  """The other nesting cannot be lazy per row: a clear error, with the fix."""
  tx = optax_rmsprop.tools.lazy_rows(
      optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1)))
  with pytest.raises(TypeError, match=r"stack_leaves\(lazy_rows\(inner\)\)"):
    tx.init({"a": jnp.ones((3, 2)), "b": jnp.ones((3, 2))})


@pytest.mark.parametrize(
    "wrap",
    [lambda tx: tx, lambda tx: optax.chain(optax.scale(1.0), tx)],
    ids=["direct", "in_chain"],
)
def test_stack_leaves_inside_stack_leaves_is_refused_at_init(wrap):
  """The outer stack_leaves already stacks the leaves (and could not restore
  a frozen param's rows in a regrouped inner state): a clear error at init,
  wherever the inner one sits."""
  stack = optax_rmsprop.tools.stack_leaves
  tx = stack(wrap(stack(optax_rmsprop.rmsprop(0.1))), max_group_size=2)
  params = {"a": jnp.ones(3), "b": jnp.ones(3), "c": jnp.ones(2)}
  with pytest.raises(ValueError, match="stack_leaves inside stack_leaves"):
    tx.init(params)
  # One stack_leaves still initialises.
  stack(optax_rmsprop.rmsprop(0.1)).init(params)
