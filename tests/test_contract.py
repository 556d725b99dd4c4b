"""The optax contract: composition, wrappers, jit, abstract init, Flax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from compile_log import compiles_during

import optax_rmsprop

PARAMS = {
    "w": jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32),
    "b": jnp.linspace(-1.0, 1.0, 4, dtype=jnp.float32),
}

CONFIGS = {
    "plain": dict(),
    "centered_momentum": dict(centered=True, momentum=0.9, nesterov=True),
    "everything": dict(
        eps_in_sqrt=False,
        centered=True,
        momentum=0.9,
        bias_correction=True,
        lr_in_momentum=False,
        decoupled_weight_decay=1e-2,
        coupled_weight_decay=1e-3,
        maximize=True,
        nu_dtype=jnp.bfloat16,
        momentum_dtype=jnp.bfloat16,
    ),
}


def grads_at(step):
  return jax.tree.map(lambda p: jnp.cos(p + step), PARAMS)


def run(tx, steps=5, params=PARAMS):
  update = jax.jit(tx.update)
  state = tx.init(params)
  for i in range(steps):
    updates, state = update(grads_at(i), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize("name", CONFIGS)
def test_no_recompilation_on_later_updates(name):
  tx = optax_rmsprop.rmsprop(1e-2, **CONFIGS[name])
  update = jax.jit(tx.update)
  state = tx.init(PARAMS)
  for i in range(3):
    _, state = update(grads_at(i), state, PARAMS)
  assert update._cache_size() == 1


@pytest.mark.parametrize("injected", [False, True])
def test_eager_updates_do_not_compile_every_step(injected):
  """Outside jit, later updates reuse compiled code; with inject_hyperparams
  (which rebuilds the transform every step) too."""
  if injected:
    tx = optax.inject_hyperparams(optax_rmsprop.rmsprop)(learning_rate=1e-2)
  else:
    tx = optax_rmsprop.rmsprop(1e-2)
  state = tx.init(PARAMS)
  _, state = tx.update(grads_at(0), state, PARAMS)  # warm-up compiles

  def more():
    s = state
    for i in range(1, 3):
      _, s = tx.update(grads_at(i), s, PARAMS)

  compiles = compiles_during(more)
  assert not compiles, compiles


@pytest.mark.parametrize("name", CONFIGS)
def test_eval_shape_init_matches_init(name):
  tx = optax_rmsprop.rmsprop(1e-2, **CONFIGS[name])
  abstract = jax.eval_shape(tx.init, PARAMS)
  concrete = tx.init(PARAMS)
  assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
  for a, c in zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete)):
    assert (a.shape, a.dtype) == (c.shape, c.dtype)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize(
    "param_dtype,grad_dtype",
    [
        (jnp.float32, jnp.float32),
        (jnp.bfloat16, jnp.bfloat16),
        (jnp.float16, jnp.float16),
        (jnp.bfloat16, jnp.float32),  # wider grads must not promote state
        (jnp.complex64, jnp.complex64),
    ],
)
def test_state_types_stable_under_lax_cond(name, param_dtype, grad_dtype):
  """lax.cond requires both branches to return identical types."""
  tx = optax_rmsprop.rmsprop(1e-2, **CONFIGS[name])
  params = jax.tree.map(lambda p: p.astype(param_dtype), PARAMS)
  grads = jax.tree.map(lambda p: p.astype(grad_dtype), grads_at(0))

  @jax.jit
  def f(pred):
    state = tx.init(params)
    return jax.lax.cond(
        pred,
        lambda: tx.init(params),
        lambda: tx.update(grads, state, params)[1],
    )

  f(True)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert all(u.dtype == grad_dtype for u in jax.tree.leaves(updates))


def test_chains_with_clipping_and_trace():
  """chain(clip, rmsprop) equals rmsprop fed the clipped gradients."""
  tx = optax.chain(
      optax.clip_by_global_norm(0.5), optax_rmsprop.rmsprop(1e-2, momentum=0.9)
  )
  plain = optax_rmsprop.rmsprop(1e-2, momentum=0.9)
  s1, s2 = tx.init(PARAMS), plain.init(PARAMS)
  for i in range(4):
    g = grads_at(i)
    norm = np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(g)))
    clipped = jax.tree.map(lambda x: x * min(1.0, 0.5 / norm), g)
    u1, s1 = jax.jit(tx.update)(g, s1, PARAMS)
    u2, s2 = jax.jit(plain.update)(clipped, s2, PARAMS)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u1, u2)
  # And the scaling composes with optax's own momentum like any transform.
  manual = optax.chain(
      optax_rmsprop.scale_by_rms(), optax.scale_by_learning_rate(1e-2),
      optax.trace(0.9),
  )
  np.testing.assert_array_equal(
      run(manual)[0]["w"], run(optax_rmsprop.rmsprop(1e-2, momentum=0.9))[0]["w"]
  )


NUMERIC = {
    "learning_rate": 1e-2,
    "decay": 0.8,
    "eps": 1e-4,
    "initial_scale": 0.5,
    "momentum": 0.7,
    "decoupled_weight_decay": 0.05,
    "coupled_weight_decay": 0.02,
}


@pytest.mark.parametrize("name", NUMERIC)
def test_inject_hyperparams_every_numeric_hyperparameter(name):
  tx = optax.inject_hyperparams(optax_rmsprop.rmsprop)(**NUMERIC)
  plain = optax_rmsprop.rmsprop(**NUMERIC)
  p1, s1 = run(tx)
  p2, _ = run(plain)
  # Injected hyperparameters are float32 arrays, so 1 - ρ rounds once more.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), p1, p2)
  # Changing the injected value inside the jitted update must matter.
  update = jax.jit(tx.update)
  _, state = update(grads_at(0), tx.init(PARAMS), PARAMS)  # momentum non-zero
  u_orig, _ = update(grads_at(1), state, PARAMS)
  state.hyperparams[name] = state.hyperparams[name] * 1.5
  u_changed, _ = update(grads_at(1), state, PARAMS)
  if name != "initial_scale":  # ν₀ is read only at init
    assert not np.allclose(u_changed["w"], u_orig["w"])
  assert update._cache_size() == 1


def test_inject_hyperparams_schedule():
  schedule = optax.linear_schedule(0.1, 0.0, 10)
  tx = optax.inject_hyperparams(optax_rmsprop.rmsprop)(
      learning_rate=schedule, momentum=0.9
  )
  _, state = run(tx, steps=4)
  # It records the lr of the last update applied: update 3, counting from 0.
  np.testing.assert_allclose(state.hyperparams["learning_rate"], schedule(3))


def test_masked_leaves_untouched():
  mask = {"w": True, "b": False}
  tx = optax.masked(optax_rmsprop.rmsprop(1e-1, centered=True), mask)
  params, _ = run(tx)
  assert not np.allclose(params["w"], PARAMS["w"])
  # masked passes the raw gradient through for unmasked leaves
  expected_b = PARAMS["b"] + sum(grads_at(i)["b"] for i in range(5))
  np.testing.assert_allclose(params["b"], expected_b, rtol=1e-6)


def test_partition_two_learning_rates():
  tx = optax.partition(
      {"fast": optax_rmsprop.rmsprop(1e-1), "slow": optax_rmsprop.rmsprop(0.0)},
      {"w": "fast", "b": "slow"},
  )
  params, _ = run(tx)
  np.testing.assert_array_equal(params["b"], PARAMS["b"])
  assert not np.allclose(params["w"], PARAMS["w"])


@pytest.mark.parametrize("kind", ["decoupled", "coupled"])
def test_weight_decay_mask(kind):
  """Zero gradients, so only the decay moves params: the masked-out leaf
  must not move at all, the other by a large, exactly known amount."""
  mask = {"w": True, "b": False}
  tx = optax_rmsprop.rmsprop(
      0.1, weight_decay_mask=mask, **{f"{kind}_weight_decay": 0.5}
  )
  params, state = PARAMS, tx.init(PARAMS)
  zeros = jax.tree.map(jnp.zeros_like, PARAMS)
  update = jax.jit(tx.update)
  for _ in range(3):
    updates, state = update(zeros, state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params["b"], PARAMS["b"])
  w = np.asarray(PARAMS["w"], np.float64)
  if kind == "decoupled":  # p <- p - lr * wd * p: ×0.95 per step
    expected = w * 0.95**3
  else:  # g = wd * p, ν = Σ 0.1·0.9^k g², step lr * g / sqrt(ν)
    expected, nu = w.copy(), 0.0
    for _ in range(3):
      g = 0.5 * expected
      nu = 0.9 * nu + 0.1 * g**2
      expected = expected - 0.1 * g / np.sqrt(nu + 1e-8)
  np.testing.assert_allclose(params["w"], expected, rtol=1e-5)
  assert np.min(np.abs(expected - w) / np.abs(w)) > 0.1  # a large effect


def test_multisteps_accumulates_then_applies_mean_gradient():
  k = 3
  tx = optax.MultiSteps(optax_rmsprop.rmsprop(1e-1, momentum=0.5), k)
  plain = optax_rmsprop.rmsprop(1e-1, momentum=0.5)
  state = tx.init(PARAMS)
  for i in range(k):
    updates, state = jax.jit(tx.update)(grads_at(i), state, PARAMS)
    if i < k - 1:
      assert all(np.all(u == 0) for u in jax.tree.leaves(updates))
  mean = jax.tree.map(lambda *g: sum(g) / k, *[grads_at(i) for i in range(k)])
  expected, _ = plain.update(mean, plain.init(PARAMS), PARAMS)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), updates, expected
  )


def test_apply_if_finite_skips_nan_steps():
  tx = optax.apply_if_finite(optax_rmsprop.rmsprop(1e-1, centered=True), 3)
  state = tx.init(PARAMS)
  _, state = tx.update(grads_at(0), state, PARAMS)
  bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), grads_at(1))
  updates, new_state = jax.jit(tx.update)(bad, state, PARAMS)
  assert int(new_state.notfinite_count) == 1
  assert all(np.all(u == 0) for u in jax.tree.leaves(updates))
  jax.tree.map(
      np.testing.assert_array_equal, new_state.inner_state, state.inner_state
  )


def test_flax_nnx_optimizer_trains():
  from flax import nnx

  model = nnx.Linear(4, 1, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(
      model, optax_rmsprop.rmsprop(1e-2, momentum=0.9), wrt=nnx.Param
  )
  x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 4)), jnp.float32)
  y = x @ jnp.array([[1.0], [-2.0], [0.5], [3.0]])

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(
        lambda m: jnp.mean((m(x) - y) ** 2)
    )(model)
    optimizer.update(model, grads)
    return loss

  first = step(model, optimizer)
  for _ in range(300):
    last = step(model, optimizer)
  assert last < 0.01 * first
  nu = optimizer.opt_state[0].nu
  assert jax.tree.leaves(nu)[0].shape in {(1,), (4, 1)}


def test_flax_linen_train_state_trains():
  import flax.linen as nn
  from flax.training import train_state

  model = nn.Dense(1)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(64, 4)), jnp.float32)
  y = x @ jnp.array([[1.0], [-2.0], [0.5], [3.0]])
  state = train_state.TrainState.create(
      apply_fn=model.apply,
      params=model.init(jax.random.PRNGKey(0), x),
      tx=optax_rmsprop.rmsprop(optax.cosine_decay_schedule(3e-2, 300)),
  )

  @jax.jit
  def step(state):
    loss, grads = jax.value_and_grad(
        lambda p: jnp.mean((state.apply_fn(p, x) - y) ** 2)
    )(state.params)
    return state.apply_gradients(grads=grads), loss

  state, first = step(state)
  for _ in range(300):
    state, last = step(state)
  assert last < 0.01 * first


def test_inject_hyperparams_with_bfloat16_params_needs_float32_hyperparams():
  """optax#1414: inject_hyperparams stores ρ=0.999 as bfloat16, i.e. 1.0.

  Passing ``hyperparam_dtype=jnp.float32`` (as the README says) keeps the
  run equal to the plain optimizer's.
  """
  params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)
  injected = optax.inject_hyperparams(
      optax_rmsprop.rmsprop, hyperparam_dtype=jnp.float32
  )(1e-3, decay=0.999)
  p1, _ = run(injected, params=params)
  p2, _ = run(optax_rmsprop.rmsprop(1e-3, decay=0.999), params=params)
  jax.tree.map(np.testing.assert_array_equal, p1, p2)


def test_coupled_weight_decay_leaves_masked_out_params_alone():
  """With zero gradients only the coupled decay moves params: the masked-out
  leaf must not move at all."""
  params = {"w": jnp.full(5, 2.0), "b": jnp.full(3, -1.5)}
  tx = optax_rmsprop.rmsprop(
    0.1, coupled_weight_decay=1.0, weight_decay_mask={"w": True, "b": False}
  )
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  p = params
  for _ in range(3):
    updates, state = tx.update(zeros, state, p)
    p = optax.apply_updates(p, updates)
  np.testing.assert_array_equal(p["b"], params["b"])
  assert np.all(np.abs(np.asarray(p["w"]) - 2.0) > 0.1)  # decayed, a lot


def test_decoupled_weight_decay_leaves_masked_out_params_alone():
  params = {"w": jnp.full(4, 2.0), "b": jnp.full(2, -1.0)}
  tx = optax_rmsprop.add_decoupled_weight_decay(
    0.1, 0.5, mask={"w": True, "b": False}
  )
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_array_equal(updates["b"], np.zeros(2))
  np.testing.assert_allclose(updates["w"], np.full(4, -0.1))  # -η λ p
