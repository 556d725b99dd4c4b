"""The facts examples/notebooks/rmsprop_explained.ipynb teaches, checked fast.

The notebook asserts its measurements when it runs (tests/test_notebooks.py);
these tests check, with the public API alone and against closed forms in
NumPy, the package behaviour its sections rest on, so a change to the core
that would falsify a sentence of the tutorial fails here within seconds.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop

THETA = np.array([0.2, 0.4, 0.6])
G = np.array([-0.5, 0.3, 0.24])
LR, RHO, EPS = 0.01, 0.9, 1e-8
# The tutorials' one-step example, with ε inside the root and ν₀ = 0.
TUTORIAL = np.array([0.23162277, 0.36837724, 0.56837725])
ULP = float(np.spacing(np.float32(0.6)))


def _one_step(tx):
  params = jnp.asarray(THETA, jnp.float32)
  updates, _ = tx.update(jnp.asarray(G, jnp.float32), tx.init(params), params)
  return np.asarray(optax.apply_updates(params, updates), np.float64)


def _by_hand(initial_scale=0.0, eps=EPS, eps_in_sqrt=True):
  nu = RHO * initial_scale + (1 - RHO) * G**2
  denominator = np.sqrt(nu + eps) if eps_in_sqrt else np.sqrt(nu) + eps
  return THETA - LR * G / denominator


def test_the_tutorial_digits_are_the_exact_update_rounded():
  assert np.array_equal(np.round(_by_hand(), 8), TUTORIAL)
  # float32 rounds the third coordinate to 0.56837726 at eight decimals.
  assert np.round(np.float64(np.float32(_by_hand()[2])), 8) == 0.56837726


@pytest.mark.parametrize("name", ["rmsprop", "scale_by_rms", "optax.rmsprop",
                                  "keras_rmsprop"])
def test_one_step_is_the_float64_answer_rounded_to_float32(name):
  tx = {
      "rmsprop": optax_rmsprop.rmsprop(LR, decay=RHO, eps=EPS),
      "scale_by_rms": optax.chain(optax_rmsprop.scale_by_rms(RHO, EPS),
                                  optax.scale(-LR)),
      "optax.rmsprop": optax.rmsprop(LR, decay=RHO, eps=EPS),
      "keras_rmsprop": optax_rmsprop.keras_rmsprop(LR, rho=RHO, epsilon=EPS),
  }[name]
  expected = _by_hand().astype(np.float32).astype(np.float64)
  assert np.array_equal(_one_step(tx), expected)


def test_torch_eps_outside_the_root_moves_the_step_by_under_half_an_ulp():
  outside = _by_hand(eps_in_sqrt=False)
  assert 1e-9 < np.max(np.abs(outside - _by_hand())) < ULP / 2
  got = _one_step(optax_rmsprop.torch_rmsprop(LR, alpha=RHO, eps=EPS))
  np.testing.assert_allclose(got, outside, rtol=0, atol=ULP / 2)
  # Keras' default ε = 1e-7 and PyTorch's default α = 0.99 do change it.
  assert np.max(np.abs(_one_step(optax_rmsprop.keras_rmsprop(LR, rho=RHO))
                       - _by_hand())) > 1e-7
  assert np.max(np.abs(_one_step(optax_rmsprop.torch_rmsprop(LR))
                       - _by_hand())) > 1e-2


def test_tf1_initial_scale_one_shortens_the_first_step_more_than_five_times():
  expected = _by_hand(initial_scale=1.0, eps=1e-10)
  got = _one_step(optax_rmsprop.tf1_rmsprop(LR, decay=RHO))
  np.testing.assert_allclose(got, expected, rtol=0, atol=ULP)
  ratio = (got - THETA) / (_by_hand() - THETA)
  assert np.all((0 < ratio) & (ratio < 0.2))


def test_rms_stats_step_size_is_lr_over_root_of_nu_plus_eps():
  tx = optax_rmsprop.rmsprop(LR, decay=RHO, eps=EPS)
  params = {"x1": jnp.float32(-5.0), "x2": jnp.float32(-2.0)}
  state = tx.init(params)
  for g in ({"x1": -1.0, "x2": -8.0}, {"x1": -0.9, "x2": 6.0}):
    _, state = tx.update(jax.tree.map(jnp.float32, g), state, params)
  stats = optax_rmsprop.rms_stats(state, learning_rate=LR, eps=EPS,
                                  quantiles=(0.5,))
  nu = {"x1": 0.09 * 1.0 + 0.1 * 0.81, "x2": 0.09 * 64.0 + 0.1 * 36.0}
  for key, value in nu.items():
    np.testing.assert_allclose(stats[f"step_size/{key}/p50"],
                               LR / np.sqrt(value + EPS), rtol=1e-6)
  # The flat coordinate (small gradients) gets the larger step: the point of
  # per-parameter steps (section 2).
  assert stats["step_size/x1/p50"] > 4 * stats["step_size/x2/p50"]


@pytest.mark.parametrize("eps,eps_in_sqrt", [(1e-8, True), (1e-4, True),
                                             (1e-8, False)])
def test_steady_step_is_sgd_below_the_eps_threshold(eps, eps_in_sqrt):
  g = np.logspace(-10, 1, 23)
  tx = optax_rmsprop.scale_by_rms(decay=RHO, eps=eps, eps_in_sqrt=eps_in_sqrt)

  def last_update(gradient):
    def body(state, _):
      updates, state = tx.update(gradient, state)
      return state, updates
    return jax.lax.scan(body, tx.init(gradient), None, length=100)[1][-1]

  got = np.asarray(jax.jit(last_update)(jnp.asarray(g, jnp.float32)))
  nu = (1 - RHO**100) * g**2
  expected = g / (np.sqrt(nu + eps) if eps_in_sqrt else np.sqrt(nu) + eps)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  threshold = np.sqrt(eps) if eps_in_sqrt else eps
  small, large = g < threshold / 100, g > threshold * 100
  np.testing.assert_allclose(got[large], 1, rtol=0.02)       # scale-free
  np.testing.assert_allclose(got[small] * threshold / g[small], 1, rtol=0.02)


def test_centered_step_grows_with_the_gradients_consistency():
  means = jnp.array([0.0, 1.0, 3.0])

  def median_step(centered, mean):
    tx = optax_rmsprop.rmsprop(LR, centered=centered)
    params = jnp.zeros(1000)

    def body(state, key):
      _, state = tx.update(mean + jax.random.normal(key, (1000,)), state,
                           params)
      return state, None

    keys = jax.random.split(jax.random.key(1), 300)
    state, _ = jax.lax.scan(body, tx.init(params), keys)
    return optax_rmsprop.rms_stats(state, learning_rate=LR, eps=EPS,
                                   quantiles=(0.5,),
                                   per_leaf=False)["step_size/p50"]

  ratio = np.asarray(jax.jit(jax.vmap(
      lambda m: median_step(True, m) / median_step(False, m)))(means))
  np.testing.assert_allclose(ratio, np.sqrt(1 + np.asarray(means)**2),
                             rtol=0.15)
  assert ratio[2] > 3 * ratio[0]
