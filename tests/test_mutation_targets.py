"""Tests written for mutants that survived the rest of the suite.

Each pins one behaviour a plausible bug would break while every other test
passes (``tools/mutate.py`` lists the mutants; its report says which test
kills which). Each makes the effect large: zero gradients where only the
weight decay moves params, values far past a storage dtype's range, an
imaginary part of the same size as the real one, gradients small enough
for ε to dominate the denominator.
"""

import importlib.util
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop


def test_coupled_weight_decay_respects_its_mask():
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


@pytest.mark.parametrize(
  "dtype,value",
  [
    (jnp.float16, 1e5),
    (jnp.bfloat16, 3.4e38),  # finite in float32, beyond bfloat16's 3.39e38
  ],
)
def test_low_precision_momentum_buffer_saturates(dtype, value):
  """A buffer value beyond the dtype's range is stored as its largest
  finite value (65504 in float16), not inf; an infinite input stays inf."""
  big = float(jnp.finfo(dtype).max)
  tx = optax_rmsprop.momentum(0.9, accumulator_dtype=dtype)
  state = tx.init(jnp.zeros(3))
  updates, state = tx.update(jnp.array([value, -value, 1.0]), state)
  assert state.trace.dtype == dtype
  np.testing.assert_array_equal(
    np.asarray(state.trace, np.float32), [big, -big, 1.0]
  )
  np.testing.assert_array_equal(np.asarray(updates), [big, -big, 1.0])
  _, state = tx.update(jnp.array([jnp.inf, 0.0, 0.0]), state)
  assert np.isposinf(np.asarray(state.trace, np.float32)[0])


@pytest.mark.parametrize("explicit", [False, True])
def test_complex_params_keep_complex_moments_with_explicit_dtypes(explicit):
  """μ and the momentum buffer of a complex param are complex even when
  nu_dtype/momentum_dtype name a real dtype: the imaginary part of the
  updates must be what it is without them."""
  kwargs = dict(nu_dtype=jnp.float32, momentum_dtype=jnp.float32)
  tx = optax_rmsprop.rmsprop(
    0.1, centered=True, momentum=0.9, **(kwargs if explicit else {})
  )
  params = jnp.zeros(4, jnp.complex64)
  grads = [
    jnp.array([1 + 2j, -3j, 0.5, 2 - 1j], jnp.complex64) * (k + 1)
    for k in range(3)
  ]
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update(g, state, params)
  rms, _, trace = state
  assert rms.mu.dtype == jnp.complex64 and trace.trace.dtype == jnp.complex64
  assert rms.nu.dtype == jnp.float32  # |g|² is real
  reference = optax.rmsprop(0.1, centered=True, momentum=0.9)
  ref_state = reference.init(params)
  for g in grads:
    ref_updates, ref_state = reference.update(g, ref_state, params)
  np.testing.assert_allclose(updates, ref_updates, rtol=1e-6)
  assert np.max(np.abs(np.imag(np.asarray(updates)))) > 0.1


def test_complex_gradient_for_a_real_param_is_an_error():
  """Storing a complex average in a real buffer would drop its imaginary
  part silently."""
  tx = optax_rmsprop.rmsprop(0.1, momentum=0.9)
  state = tx.init(jnp.zeros(2))
  with pytest.raises(ValueError, match="complex"):
    tx.update(jnp.array([1j, 1.0], jnp.complex64), state)


keras_installed = importlib.util.find_spec("keras") is not None


@pytest.mark.skipif(not keras_installed, reason="needs keras")
def test_keras_defaults_are_keras_signature_defaults():
  import keras  # pylint: disable=import-outside-toplevel

  theirs = inspect.signature(keras.optimizers.RMSprop).parameters
  ours = inspect.signature(optax_rmsprop.keras_rmsprop).parameters
  shared = [name for name in ours if name in theirs]
  assert {"learning_rate", "rho", "momentum", "epsilon", "centered"} <= set(
    shared
  )
  for name in shared:
    assert ours[name].default == theirs[name].default, name


@pytest.mark.skipif(not keras_installed, reason="needs keras")
def test_keras_default_epsilon_with_gradients_where_it_matters():
  """|g| ~ 1e-4: (1 - ρ) g² ~ 1e-9 is below ε = 1e-7, so the step depends
  on ε (1e-8 would give a ~3x larger first step)."""
  import keras  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  w0 = rng.normal(size=5).astype(np.float32)
  grads = [(rng.normal(size=5) * 1e-4).astype(np.float32) for _ in range(5)]
  var = keras.Variable(w0)
  opt = keras.optimizers.RMSprop()  # every default
  for g in grads:
    opt.apply([g], [var])
  expected = np.asarray(var.numpy())

  def run(tx):
    p, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
    for g in grads:
      updates, state = tx.update(jnp.asarray(g), state, p)
      p = optax.apply_updates(p, updates)
    return np.asarray(p)

  actual = run(optax_rmsprop.keras_rmsprop())
  np.testing.assert_allclose(actual, expected, rtol=2e-6)
  moved = np.max(np.abs(expected - w0))  # ~1.5e-3 over 5 steps
  wrong = run(optax_rmsprop.keras_rmsprop(epsilon=1e-8))
  assert np.max(np.abs(wrong - expected)) > 0.5 * moved  # ε matters here


torch_installed = importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not torch_installed, reason="needs torch")
def test_torch_default_eps_with_gradients_where_it_matters():
  """|g| ~ 1e-9: √((1 - α) g²) ~ 1e-10 is below ε = 1e-8."""
  import torch  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(1)
  w0 = rng.normal(size=5).astype(np.float32)
  grads = [(rng.normal(size=5) * 1e-9).astype(np.float32) for _ in range(5)]
  w = torch.tensor(w0.copy(), requires_grad=True)
  opt = torch.optim.RMSprop([w])  # every default
  for g in grads:
    w.grad = torch.tensor(g)
    opt.step()
  expected = w.detach().numpy()
  tx = optax_rmsprop.torch_rmsprop()
  p, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
  for g in grads:
    updates, state = tx.update(jnp.asarray(g), state, p)
    p = optax.apply_updates(p, updates)
  np.testing.assert_allclose(np.asarray(p), expected, rtol=2e-6)
  moved = np.max(np.abs(expected - w0))
  wrong = optax_rmsprop.torch_rmsprop(eps=1e-10)
  q, state = jnp.asarray(w0), wrong.init(jnp.asarray(w0))
  for g in grads:
    updates, state = wrong.update(jnp.asarray(g), state, q)
    q = optax.apply_updates(q, updates)
  assert np.max(np.abs(np.asarray(q) - expected)) > 0.5 * moved


def test_add_decoupled_weight_decay_respects_its_mask():
  params = {"w": jnp.full(4, 2.0), "b": jnp.full(2, -1.0)}
  tx = optax_rmsprop.add_decoupled_weight_decay(
    0.1, 0.5, mask={"w": True, "b": False}
  )
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_array_equal(updates["b"], np.zeros(2))
  np.testing.assert_allclose(updates["w"], np.full(4, -0.1))  # -η λ p


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


def test_tf1_defaults_are_tf1_signature_defaults():
  ours = inspect.signature(optax_rmsprop.tf1_rmsprop).parameters
  assert {k: ours[k].default for k in TF1_DEFAULTS} == TF1_DEFAULTS


def test_tf1_default_epsilon_with_gradients_where_it_matters():
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


def test_low_precision_mu_saturates_and_recovers():
  """A gradient of 1e6 puts μ = 0.1 g = 1e5 beyond float16's 65504: stored
  saturated, μ decays back once the gradients are ordinary; stored as inf,
  it would stay inf (ρ·inf) and pin ν − μ² at 0 for good."""
  tx = optax_rmsprop.scale_by_rms(
    decay=0.9, eps=1e-8, centered=True, nu_dtype=jnp.float16
  )
  state = tx.init(jnp.zeros(2))
  _, state = tx.update(jnp.array([1e6, -1e6]), state)
  np.testing.assert_array_equal(
    np.asarray(state.mu, np.float32), [65504.0, -65504.0]
  )
  for k in range(150):  # sign flips: μ → 0, ν → 1, ν - μ² → 1
    updates, state = tx.update(jnp.array([1.0, -1.0]) * (-1) ** k, state)
  assert np.all(np.isfinite(np.asarray(state.mu, np.float32)))
  assert np.all(np.abs(np.asarray(updates)) < 10)  # not g/√ε = 1e4


def test_centered_none_gradient_keeps_its_mu():
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


def test_float16_moments_are_computed_in_float32():
  """|g|² of a float16 g = 300 is 9e4, beyond float16's 65504: computed in
  float16 it overflows, ν = inf and the update is 0; computed in float32, as
  documented, ν = 0.1 g² = 9000 fits float16 and the update is
  g / √(0.1 g²) = ±√10."""
  tx = optax_rmsprop.scale_by_rms(decay=0.9, eps=0.0)
  state = tx.init(jnp.zeros(3, jnp.float16))
  g = jnp.array([300.0, -300.0, 0.5], jnp.float16)
  updates, state = jax.jit(tx.update)(g, state)
  assert updates.dtype == jnp.float16 and state.nu.dtype == jnp.float16
  np.testing.assert_allclose(
    np.asarray(state.nu, np.float32), [9000.0, 9000.0, 0.025], rtol=1e-3
  )
  np.testing.assert_allclose(
    np.asarray(updates, np.float32),
    np.sqrt(10) * np.array([1, -1, 1]),
    rtol=1e-3,
  )


@pytest.mark.parametrize("name", ["base_momentum", "max_momentum"])
def test_nan_momentum_bounds_of_onecycle_are_rejected(name):
  """The one range check without bounds: NaN must still fail (NaN compares
  false against any bound, so only the explicit NaN test catches it here),
  or every momentum of the schedule is NaN."""
  with pytest.raises(ValueError, match=name):
    optax_rmsprop.torch.torch_onecycle_schedules(0.1, 10, **{name: float("nan")})


@pytest.mark.parametrize(
  "make,name",
  [
    (lambda v: optax_rmsprop.rmsprop(v), "learning_rate"),
    (lambda v: optax_rmsprop.scale_by_rms(eps=v), "eps"),
    (
      lambda v: optax_rmsprop.rmsprop(0.1, coupled_weight_decay=v),
      "coupled_weight_decay",
    ),
    (
      lambda v: optax_rmsprop.torch.torch_onecycle_schedules(0.1, 10, max_momentum=v),
      "max_momentum",
    ),
  ],
)
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_hyperparameters_are_rejected(make, name, value):
  """+inf passes a lower bound (inf >= 0) and an absent upper one: only the
  explicit finiteness check rejects it."""
  with pytest.raises(ValueError, match=f"{name} must be finite"):
    make(value)
