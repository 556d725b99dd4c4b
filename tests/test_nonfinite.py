"""NaN and inf gradients during training, for the core and every preset.

Under ``optax.apply_if_finite``, a step with a non-finite gradient leaves the
params and the inner state exactly as they were, and the run continues bit
for bit as if those steps had never been taken. Without it, the non-finite
update reaches the params (so it is seen, never silently replaced by a wrong
finite number) and poisons only the elements it touched, for good: the rest
of the params and the state are bit-identical to a run whose gradients were
finite there. Elements are independent in every chain except through
Keras' ``clipnorm`` (one norm per leaf: the whole leaf), ``global_clipnorm``
(one norm: every leaf) and timm's ``caution`` (the mask is rescaled by its
mean over the leaf), as in those frameworks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop

# (factory, which elements a bad gradient element reaches: "element",
# "leaf" or "all").
PRESETS = {
  "rmsprop": (
    lambda: optax_rmsprop.rmsprop(
      optax.exponential_decay(0.01, 3, 0.9),
      centered=True,
      momentum=0.9,
      nesterov=True,
      bias_correction=True,
      coupled_weight_decay=0.01,
      decoupled_weight_decay=0.01,
      # centered + bias correction: optax's ν̂ − μ̂² at step 1 is rounding
      # noise around 0, NaN where it is below -ε; the safe path clamps it.
      safe_numerics=True,
    ),
    "element",
  ),
  "rmsprop_bfloat16_state": (
    lambda: optax_rmsprop.rmsprop(
      0.01,
      momentum=0.5,
      lr_in_momentum=False,
      eps_in_sqrt=False,
      nu_dtype=jnp.bfloat16,
      momentum_dtype=jnp.bfloat16,
    ),
    "element",
  ),
  "torch_rmsprop": (
    lambda: optax_rmsprop.torch_rmsprop(
      0.01, momentum=0.9, centered=True, weight_decay=0.01
    ),
    "element",
  ),
  "keras_rmsprop": (
    lambda: optax_rmsprop.keras_rmsprop(
      0.01,
      momentum=0.9,
      centered=True,
      weight_decay=0.01,
      use_ema=True,
      ema_overwrite_frequency=3,
    ),
    "element",
  ),
  "keras_rmsprop_clipnorm": (
    lambda: optax_rmsprop.keras_rmsprop(
      0.01, clipnorm=1.0, gradient_accumulation_steps=2
    ),
    "leaf",
  ),
  "keras_rmsprop_global_clipnorm": (
    lambda: optax_rmsprop.keras_rmsprop(0.01, global_clipnorm=1.0),
    "all",
  ),
  "tf1_rmsprop": (
    lambda: optax_rmsprop.tf1_rmsprop(0.01, momentum=0.9, centered=True),
    "element",
  ),
  "tf1_rmsprop_sparse": (
    lambda: optax_rmsprop.tf1_rmsprop(0.01, momentum=0.9, sparse=True),
    "element",
  ),
  "timm_rmsprop_tf": (
    lambda: optax_rmsprop.timm_rmsprop_tf(
      0.01, momentum=0.9, weight_decay=0.01, decoupled_decay=True
    ),
    "element",
  ),
  "timm_rmsprop_tf_caution": (
    lambda: optax_rmsprop.timm_rmsprop_tf(
      0.01, momentum=0.9, centered=True, caution=True
    ),
    "leaf",
  ),
  "dqn_rmsprop": (
    lambda: optax_rmsprop.dqn_rmsprop(weight_cost=0.01),
    "element",
  ),
}

STEPS = 10
# step -> [(leaf, index, value)]: NaN, inf and -inf, in both leaves, over
# consecutive and separate steps.
BAD = {
  2: [("w", (0, 1), np.nan)],
  3: [("b", (2,), np.inf), ("w", (5, 7), -np.inf)],
  6: [("w", (0, 1), np.inf)],
}
# The tf1 sparse preset's rows are those of w; a row is active if any entry
# of its gradient is nonzero, NaN included.


def problem():
  rng = np.random.default_rng(0)
  params = {  # >= 4096 elements (XLA's vectorised loops) and an odd size
    "w": jnp.asarray(rng.normal(size=(64, 65)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=(7,)), jnp.float32),
  }
  grads = [
    jax.tree.map(
      lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params
    )
    for _ in range(STEPS)
  ]
  return params, grads


def with_bad_values(grads):
  grads = [dict(g) for g in grads]
  for step, entries in BAD.items():
    for leaf, index, value in entries:
      grads[step][leaf] = grads[step][leaf].at[index].set(value)
  return grads


def make_step(tx):
  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates

  return step


def assert_trees_equal(actual, desired):
  assert jax.tree.structure(actual) == jax.tree.structure(desired)
  for a, d in zip(jax.tree.leaves(actual), jax.tree.leaves(desired)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(d))


@pytest.mark.parametrize("name", PRESETS)
def test_apply_if_finite_skips_bad_steps_bit_for_bit(name):
  tx = optax.apply_if_finite(PRESETS[name][0](), max_consecutive_errors=5)
  step = make_step(tx)
  params, grads = problem()
  bad_grads = with_bad_values(grads)

  p, state = params, tx.init(params)
  for i, g in enumerate(bad_grads):
    before = (p, state.inner_state)
    p, state, updates = step(p, state, g)
    if i in BAD:  # nothing moves: params, inner state (counts included)
      assert_trees_equal((p, state.inner_state), before)
      assert not bool(state.last_finite)
    else:
      assert bool(state.last_finite)
  assert int(state.total_notfinite) == len(BAD)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(p))

  # The run that never saw the bad steps, through the same compiled step.
  q, skipped = params, tx.init(params)
  for i, g in enumerate(grads):
    if i not in BAD:
      q, skipped, _ = step(q, skipped, g)
  assert_trees_equal(p, q)
  assert_trees_equal(state.inner_state, skipped.inner_state)
  assert int(skipped.total_notfinite) == 0


def reached(params, reach):
  """Per leaf, a boolean mask of the elements the bad gradients reach."""
  masks = jax.tree.map(lambda p: np.zeros(p.shape, bool), params)
  for entries in BAD.values():
    for leaf, index, _ in entries:
      if reach == "element":
        masks[leaf][index] = True
      elif reach == "leaf":
        masks[leaf][...] = True
      else:
        for m in masks.values():
          m[...] = True
  return masks


def params_shaped(tx, state, params):
  """The state's params-shaped subtrees (ν, μ, buffers, EMAs, ...), as a
  list of params-like dicts; other leaves (counts, hyperparameters) apart."""
  found = []
  optax.tree_map_params(
    tx,
    lambda leaf, key: found.append((key, leaf)) or leaf,
    state,
    {k: k for k in params},
    transform_non_params=lambda x: x,
  )
  return found


@pytest.mark.parametrize("name", PRESETS)
def test_without_apply_if_finite_only_the_touched_elements_are_lost(name):
  factory, reach = PRESETS[name]
  tx = factory()
  step = make_step(tx)
  params, grads = problem()
  bad_grads = with_bad_values(grads)
  masks = reached(params, reach)

  runs = []
  for gs in (bad_grads, grads):
    p, state = params, tx.init(params)
    first_updates = {}
    for i, g in enumerate(gs):
      p, state, updates = step(p, state, g)
      if i in BAD:
        first_updates[i] = updates
    runs.append((p, state, first_updates))
  (p_bad, s_bad, u_bad), (p_ok, s_ok, _) = runs

  # A bad gradient element gives a non-finite update there (documented:
  # apply_if_finite must see it), and its param ends non-finite. Keras
  # accumulates (MultiSteps) and only updates every other call.
  for i, entries in BAD.items():
    for leaf, index, _ in entries:
      if name != "keras_rmsprop_clipnorm" or i % 2 == 1:
        assert not np.isfinite(np.asarray(u_bad[i][leaf])[index]), (i, leaf)
      assert not np.isfinite(np.asarray(p_bad[leaf])[index])

  # Everything the bad elements cannot reach is bit-identical.
  for leaf, mask in masks.items():
    np.testing.assert_array_equal(
      np.asarray(p_bad[leaf])[~mask], np.asarray(p_ok[leaf])[~mask]
    )
  bad_state, ok_state = (params_shaped(tx, s, params) for s in (s_bad, s_ok))
  assert len(bad_state) == len(ok_state) > 0
  for (leaf, a), (_, b) in zip(bad_state, ok_state):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(a[~masks[leaf]], b[~masks[leaf]])
  # The rest of the state (step counts, accumulation counters) too.
  rest = lambda s: optax.tree_map_params(
    tx, lambda x: None, s, transform_non_params=lambda x: x
  )
  assert_trees_equal(rest(s_bad), rest(s_ok))


@pytest.mark.parametrize("centered", [False, True])
def test_nu_after_nonfinite_gradients(centered):
  """ν of the touched elements, as docs/robustness.md states: NaN stays NaN;
  after ±inf or a finite |g| whose square overflows, ν is inf for that step
  (g/√ν NaN for ±inf, 0 for the finite one, as in optax) and restarts from
  float32's largest value on the next; μ keeps ±inf. At 1e30, centered,
  |μ|² overflows too: ν − |μ|² would be inf − inf = NaN, but is taken as
  inf (a 0 step, as without centering)."""
  big = float(jnp.finfo(jnp.float32).max)
  tx = optax_rmsprop.scale_by_rms(
      decay=0.9, centered=centered, safe_numerics=True
  )
  state = tx.init(jnp.zeros(6))
  bad = jnp.array([np.nan, np.inf, -np.inf, 1e20, 1e30, 2.0], jnp.float32)
  updates, state = jax.jit(tx.update)(bad, state)
  nu = np.asarray(state.nu)
  assert np.isnan(nu[0]) and np.all(np.isposinf(nu[1:5]))
  assert np.all(np.isnan(np.asarray(updates)[:3]))
  np.testing.assert_array_equal(np.asarray(updates)[3:5], 0.0)
  var = 0.4 - 0.2**2 if centered else 0.4  # 0.1 g², minus (0.1 g)²
  np.testing.assert_allclose(
    np.asarray(updates)[5], 2 / np.sqrt(var), rtol=1e-6
  )
  if centered:
    mu = np.asarray(state.mu)
    assert np.isnan(mu[0]) and mu[1] == np.inf and mu[2] == -np.inf
  _, state = jax.jit(tx.update)(jnp.ones(6), state)
  nu = np.asarray(state.nu)
  assert np.isnan(nu[0])
  # 0.9 · max + 0.1 · 1: finite again (inf, were the old ν not clamped).
  np.testing.assert_allclose(nu[1:5], 0.9 * big, rtol=1e-6)


def test_narrow_nu_saturates_at_its_dtype_max():
  """A bfloat16 ν cannot hold the intermediate inf: it saturates at
  bfloat16's largest value, so g/√ν is ±inf for ±inf and finite for a
  finite overflowing gradient."""
  big = float(jnp.finfo(jnp.bfloat16).max)
  tx = optax_rmsprop.scale_by_rms(decay=0.9, nu_dtype=jnp.bfloat16)
  state = tx.init(jnp.zeros(4))
  bad = jnp.array([np.nan, np.inf, -np.inf, 1e20], jnp.float32)
  updates, state = jax.jit(tx.update)(bad, state)
  nu = np.asarray(state.nu, np.float32)
  assert np.isnan(nu[0])
  np.testing.assert_array_equal(nu[1:], big)
  u = np.asarray(updates)
  assert np.isnan(u[0]) and u[1] == np.inf and u[2] == -np.inf
  np.testing.assert_allclose(u[3], 1e20 / np.sqrt(big), rtol=1e-2)
