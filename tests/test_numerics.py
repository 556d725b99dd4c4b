"""Numerics: every dtype × hostile gradients gives finite, dtype-stable results."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop

DTYPES = ["float16", "bfloat16", "float32", "float64", "complex64"]


def hostile_gradient(kind: str, dtype, step: int) -> np.ndarray:
  """Gradients that break naive RMSprop in ``dtype``."""
  finfo = jnp.finfo(dtype)
  if kind == "zero":
    g = np.zeros(6)
  elif kind == "constant":  # centered variance -> 0 exactly
    g = np.full(6, 0.75)
  elif kind == "huge":  # |g|² overflows the dtype
    g = np.full(6, float(np.sqrt(float(finfo.max))) * 10) * (-1) ** step
  elif kind == "tiny":  # subnormal-adjacent: |g|² underflows to 0
    g = np.full(6, float(finfo.tiny) * 4) * (-1) ** step
  else:
    raise ValueError(kind)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    g = g + 1j * g[::-1]
  return jnp.asarray(g, dtype)


def as_numpy(x) -> np.ndarray:
  """Host copy in a NumPy-native dtype (NumPy has no bfloat16 arithmetic)."""
  return np.asarray(x.astype(jnp.float32) if x.dtype == jnp.bfloat16 else x)


CONFIGS = {
    "plain": dict(),
    "eps0": dict(eps=0.0),
    "eps_outside": dict(eps_in_sqrt=False),
    "centered_momentum": dict(centered=True, momentum=0.9),
    "centered_tiny_eps_bias": dict(centered=True, eps=1e-30, bias_correction=True),
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", ["zero", "constant", "huge", "tiny"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_finite_and_dtype_stable(dtype, kind, config):
  with jax.enable_x64(dtype == "float64"):
    dtype = jnp.dtype(dtype)
    tx = optax_rmsprop.rmsprop(1e-3, safe_numerics=True, **CONFIGS[config])
    params = jnp.ones(6, dtype)
    state = tx.init(params)
    init_types = jax.tree.map(lambda x: x.dtype, state)
    # Eight hostile steps, then an ordinary one: the state must be finite
    # after it (a |g|² that overflowed makes ν inf for that step only).
    grads = jnp.stack([hostile_gradient(kind, dtype, i) for i in range(8)]
                      + [jnp.full(6, 0.5, dtype)])

    @jax.jit
    def run(params, state):
      def body(carry, g):
        params, state = carry
        updates, state = tx.update(g, state, params)
        return (params, state), updates

      return jax.lax.scan(body, (params, state), grads)

    (_, state), updates = run(params, state)
    assert updates.dtype == dtype
    assert np.all(np.isfinite(as_numpy(updates)))
    for leaf in jax.tree.leaves(state):
      assert np.all(np.isfinite(as_numpy(leaf)))
    assert jax.tree.map(lambda x: x.dtype, state) == init_types
    if kind == "zero":
      assert np.all(as_numpy(updates[:8]) == 0)
    if kind != "huge":  # (after huge, ν ~ max: steps are tiny or, with
      # bias correction, ν̂ overflows to a 0 step; see the test below)
      assert np.any(as_numpy(updates[8]) != 0)  # the ordinary step moves


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", ["zero", "constant", "huge", "tiny"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_default_is_optax_bit_for_bit_non_finite_included(dtype, kind, config):
  """Without safe_numerics, float32/float64 run optax's own program: the
  same bits as optax.rmsprop on hostile gradients, NaN and inf included
  (assert_array_equal matches NaN with NaN), state and updates."""
  with jax.enable_x64(dtype == "float64"):
    dtype = jnp.dtype(dtype)
    grads = jnp.stack([hostile_gradient(kind, dtype, i) for i in range(8)]
                      + [jnp.full(6, 0.5, dtype)])
    outputs = []
    for make in (optax_rmsprop.rmsprop, optax.rmsprop):
      tx = make(1e-3, **CONFIGS[config])
      params = jnp.ones(6, dtype)

      def body(carry, g, tx=tx):
        params, state = carry
        updates, state = tx.update(g, state, params)
        return (optax.apply_updates(params, updates), state), updates

      outputs.append(jax.jit(lambda p, s, body=body: jax.lax.scan(
          body, (p, s), grads))(params, tx.init(params)))
    jax.tree.map(np.testing.assert_array_equal, *outputs)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("eps_in_sqrt", [True, False])
def test_overflowing_square_gives_zero_update_then_recovers(
    centered, eps_in_sqrt
):
  """|g|² overflows float32 (|g| > 1.8e19): that step's update is 0, as in
  optax, but ν restarts from the largest float on the next step, where
  optax's ν stays inf and the element never moves again."""
  kwargs = dict(learning_rate=0.1, centered=centered, eps_in_sqrt=eps_in_sqrt)
  g_huge = jnp.array([1e20, -1e20, 1.0], jnp.float32)
  g_ok = jnp.array([1.0, -1.0, 1.0], jnp.float32)
  ours = optax_rmsprop.rmsprop(**kwargs, safe_numerics=True)
  theirs = optax.rmsprop(**kwargs)
  params = jnp.zeros(3)
  s1, s2 = ours.init(params), theirs.init(params)
  u1, s1 = jax.jit(ours.update)(g_huge, s1)
  u2, s2 = jax.jit(theirs.update)(g_huge, s2)
  np.testing.assert_array_equal(u1, u2)  # [0, 0, finite], bit for bit
  assert u1[0] == 0 and u1[1] == 0 and u1[2] != 0
  for _ in range(3):
    u1, s1 = jax.jit(ours.update)(g_ok, s1)
    u2, s2 = jax.jit(theirs.update)(g_ok, s2)
  assert np.all(np.isfinite(np.asarray(s1[0].nu)))
  assert np.all(np.asarray(u1) != 0)  # every element moves again
  assert np.asarray(u2)[0] == 0  # optax's stays stuck


@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("g_huge", [1e21, 1e30])
def test_centered_recovers_from_overflow_without_a_burst(g_huge, bias_correction):
  """After |g|² overflowed, ν restarts from the largest float, but
  μ = 0.1 g (up to 1e29) is still finite: unclamped, |μ|² > ν makes the
  variance 0 for hundreds of steps and the step lr·g/√ε = 1e3 (optax: NaN,
  then 0 forever). Sign-flipping unit gradients afterwards: every step of
  that element is at most lr (variance → 1, μ → 0), and the last is ≈ lr."""
  lr = 0.1
  tx = optax_rmsprop.rmsprop(
      lr, centered=True, eps=1e-8, bias_correction=bias_correction,
      safe_numerics=True,
  )
  state = tx.init(jnp.zeros(2))
  update = jax.jit(tx.update)
  u, state = update(jnp.array([g_huge, 1.0], jnp.float32), state)
  assert u[0] == 0
  largest = 0.0
  for k in range(1500):
    u, state = update(jnp.array([1.0, -1.0], jnp.float32) * (-1) ** k, state)
    largest = max(largest, abs(float(u[0])))
  assert largest <= 1.01 * lr, largest
  np.testing.assert_allclose(np.abs(np.asarray(u)), lr, rtol=0.01)


def test_float16_zero_gradient_regression_optax_1784():
  """optax#1784: ε underflows in float16 and 0·rsqrt(0) gives NaN."""
  params = jnp.ones(3, jnp.float16)
  for make in (optax_rmsprop.scale_by_rms, optax_rmsprop.rmsprop):
    tx = make(1e-3) if make is optax_rmsprop.rmsprop else make()
    updates, _ = tx.update(jnp.zeros(3, jnp.float16), tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(updates), np.zeros(3))


def test_low_precision_matches_float32_computation():
  """bf16 in, bf16 out, but the arithmetic is float32's."""
  g32 = jnp.asarray(np.random.default_rng(0).normal(size=64), jnp.float32)
  g16 = g32.astype(jnp.bfloat16)
  tx = optax_rmsprop.scale_by_rms(eps=1e-8, nu_dtype=jnp.float32)
  u16, _ = tx.update(g16, tx.init(g16))
  u32, _ = tx.update(g16.astype(jnp.float32), tx.init(g32))
  np.testing.assert_array_equal(np.asarray(u16), np.asarray(u32.astype(jnp.bfloat16)))


def test_nu_dtype_sets_state_storage_and_tracks_float32():
  params = {"w": jnp.ones((8, 8))}
  tx = optax_rmsprop.rmsprop(1e-2, centered=True, momentum=0.9,
                             nu_dtype=jnp.bfloat16, momentum_dtype=jnp.bfloat16)
  ref = optax_rmsprop.rmsprop(1e-2, centered=True, momentum=0.9)
  state, ref_state = tx.init(params), ref.init(params)
  assert state[0].nu["w"].dtype == jnp.bfloat16
  assert state[0].mu["w"].dtype == jnp.bfloat16
  assert state[2].trace["w"].dtype == jnp.bfloat16
  p, p_ref = params, params
  for i in range(50):
    g = jax.tree.map(lambda x: jnp.sin(x * 3.0 + i), p)
    u, state = jax.jit(tx.update)(g, state, p)
    p = optax.apply_updates(p, u)
    g = jax.tree.map(lambda x: jnp.sin(x * 3.0 + i), p_ref)
    u, ref_state = jax.jit(ref.update)(g, ref_state, p_ref)
    p_ref = optax.apply_updates(p_ref, u)
  assert p["w"].dtype == jnp.float32
  np.testing.assert_allclose(p["w"], p_ref["w"], rtol=2e-2)


@pytest.mark.parametrize("state_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("centered", [False, True])
def test_update_uses_the_state_as_stored(state_dtype, centered):
  """Low-precision ν, μ: the stored state is float32 arithmetic on the
  previous stored state, rounded once, and each step's update is
  g / sqrt(v + ε) with v from that *stored* state. Checked step by step."""
  rho, eps, f32 = 0.9, 1e-6, np.float32
  sdtype = jnp.dtype(state_dtype)  # NumPy-usable (ml_dtypes for bfloat16)
  tx = optax_rmsprop.scale_by_rms(
      decay=rho, eps=eps, centered=centered, nu_dtype=sdtype
  )
  rng = np.random.default_rng(1)
  state = tx.init(jnp.zeros(256))
  update = jax.jit(tx.update)
  checked = 0
  for _ in range(20):
    g = (rng.normal(size=256) * 10.0 ** rng.integers(-3, 3)).astype(f32)
    old = state
    u, state = update(jnp.asarray(g), state)
    nu = np.asarray(state.nu)
    assert nu.dtype == sdtype
    want = f32(1 - rho) * g * g + f32(rho) * np.asarray(old.nu).astype(f32)
    tie = _near_rounding_tie(want, sdtype)
    np.testing.assert_array_equal(nu[~tie], want[~tie].astype(sdtype))
    v = nu.astype(f32)
    if centered:
      mu = np.asarray(state.mu)
      want = f32(1 - rho) * g + f32(rho) * np.asarray(old.mu).astype(f32)
      tie_mu = _near_rounding_tie(want, sdtype)
      np.testing.assert_array_equal(mu[~tie_mu], want[~tie_mu].astype(sdtype))
      tie |= tie_mu
      v = np.maximum(v - mu.astype(f32) ** 2, f32(0))
    # At a near-tie the update's fusion may round its own (FMA-contracted)
    # copy of ν the other way: one ulp of the storage dtype.
    np.testing.assert_allclose(
        np.asarray(u)[~tie], (g / np.sqrt(v + f32(eps)))[~tie], rtol=2e-6
    )
    checked += int((~tie).sum())
  # 0.9 × a short-mantissa ν often lands exactly on a tie: a few % here.
  assert checked > 0.9 * 20 * 256


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_updates_use_the_buffer_as_stored(nesterov):
  """A bfloat16 momentum buffer: m_t = bf16(g + β m_{t-1}) in float32, and
  the update is m_t (or g + β m_t) from that stored m_t."""
  beta, f32, bf16 = 0.9, np.float32, jnp.dtype("bfloat16")
  tx = optax_rmsprop.momentum(beta, nesterov, accumulator_dtype=bf16)
  rng = np.random.default_rng(2)
  state = tx.init(jnp.zeros(256))
  update = jax.jit(tx.update)
  for _ in range(10):
    g = rng.normal(size=256).astype(f32)
    old = np.asarray(state.trace).astype(f32)
    u, state = update(jnp.asarray(g), state)
    m = np.asarray(state.trace)
    assert m.dtype == bf16 and u.dtype == jnp.float32
    want = g + f32(beta) * old
    tie = _near_rounding_tie(want, bf16)
    np.testing.assert_array_equal(m[~tie], want[~tie].astype(bf16))
    m = m.astype(f32)
    want_u = g + f32(beta) * m if nesterov else m
    scale = np.abs(g) + np.abs(m) if nesterov else np.abs(m)  # cancellation
    err = np.abs(np.asarray(u) - want_u)
    assert np.all((err <= 1e-6 * scale)[~tie])


def _near_rounding_tie(x: np.ndarray, dtype) -> np.ndarray:
  """Where float32 ``x`` is within 4 float32 ulps of a rounding boundary of
  ``dtype`` (a different op order could round it the other way)."""
  delta = 4 * np.spacing(np.abs(x))
  return (x - delta).astype(dtype) != (x + delta).astype(dtype)


def test_complex_gradients_use_abs_squared():
  g = jnp.array([3 + 4j, 1j, 0j], jnp.complex64)
  tx = optax_rmsprop.scale_by_rms(decay=0.5, eps=0.0, centered=True)
  state = tx.init(g)
  assert state.nu.dtype == jnp.float32 and state.mu.dtype == jnp.complex64
  u, state = tx.update(g, state)
  # ν = 0.5|g|², μ = 0.5 g, v = ν − |μ|² = 0.25|g|², u = g / (0.5|g|)
  np.testing.assert_allclose(state.nu, 0.5 * np.abs(np.asarray(g)) ** 2)
  np.testing.assert_allclose(
      u, np.array([2 * (3 + 4j) / 5, 2j, 0]), rtol=1e-6
  )


def test_non_finite_gradients_still_give_non_finite_updates():
  """Saturation must not hide a bad step from optax.apply_if_finite."""
  tx = optax_rmsprop.rmsprop(1e-3)
  params = jnp.ones(3)
  for bad in (jnp.nan, jnp.inf):
    u, _ = tx.update(jnp.array([1.0, bad, 0.0]), tx.init(params), params)
    assert not np.isfinite(np.asarray(u)[1])


@pytest.mark.parametrize("eps_in_sqrt", [True, False])
def test_traced_zero_eps_still_floors_the_denominator(eps_in_sqrt):
  """The floor is skipped only for a concrete ε >= the smallest normal; a
  traced ε (inject_hyperparams) of 0 must still give 0 for a zero gradient."""
  tx = optax.inject_hyperparams(optax_rmsprop.rmsprop)(
      learning_rate=0.1, eps=0.0, eps_in_sqrt=eps_in_sqrt, safe_numerics=True
  )
  params = jnp.ones(3)
  state = tx.init(params)
  u, _ = jax.jit(tx.update)(jnp.zeros(3), state, params)
  np.testing.assert_array_equal(np.asarray(u), np.zeros(3))


@pytest.mark.parametrize(
  "dtype,value",
  [
    (jnp.float16, 1e5),
    (jnp.bfloat16, 3.4e38),  # finite in float32, beyond bfloat16's 3.39e38
  ],
)
def test_low_precision_momentum_buffer_saturates_at_the_largest_finite_value(dtype, value):
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
def test_complex_params_keep_complex_mu_and_momentum_under_real_state_dtypes(explicit):
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


def test_low_precision_mu_saturates_and_decays_back():
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


def test_float16_moments_are_computed_in_float32_not_float16():
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


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_a_tree_mixing_dtypes_updates_each_leaf_as_if_alone(momentum):
  """float32 leaves run optax's program and bfloat16/float16 leaves ours, in
  one tree: each leaf's update and state must be what the same optimizer
  gives that leaf on its own (no leaf handed to the other program, none
  lost)."""
  rng = np.random.default_rng(5)
  params = {
    "a": jnp.asarray(rng.normal(size=3), jnp.float32),
    "b": jnp.asarray(rng.normal(size=4), jnp.bfloat16),
    "c": jnp.asarray(rng.normal(size=2), jnp.float32),
    "d": jnp.asarray(rng.normal(size=2), jnp.float16),
  }
  tx = optax_rmsprop.rmsprop(0.1, centered=True, momentum=momentum)
  grads = [
    jax.tree.map(lambda p, k=k: (p * (k + 2)).astype(p.dtype), params)
    for k in range(3)
  ]
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update(g, state, params)
  for name, leaf in params.items():
    alone = tx.init({name: leaf})
    for g in grads:
      u_alone, alone = tx.update({name: g[name]}, alone, {name: leaf})
    assert updates[name].dtype == leaf.dtype
    np.testing.assert_allclose(
      np.asarray(updates[name], np.float32),
      np.asarray(u_alone[name], np.float32),
      rtol=1e-6,
    )
    np.testing.assert_array_equal(
      np.asarray(state[0].nu[name], np.float32),
      np.asarray(alone[0].nu[name], np.float32),
    )


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("eps_in_sqrt", [False, True])
@pytest.mark.parametrize("initial_scale", [0.0, 1.0])
def test_own_arithmetic_matches_optax_program_on_ordinary_gradients(
  centered, bias_correction, eps_in_sqrt, initial_scale
):
  """float32 leaves run optax's own program by default and this package's
  arithmetic with safe_numerics=True (as bfloat16/float16 leaves always do):
  on ordinary gradients the two agree to float32 rounding in every
  configuration, so the own arithmetic (the EMA weights, |g|², ε's place,
  ν₀, the centered variance, the bias correction and its count) is the
  same RMSprop. ε = 1e-2 is comparable to √ν so that its place matters."""
  kwargs = dict(
    learning_rate=0.1,
    eps=1e-2,
    centered=centered,
    bias_correction=bias_correction,
    eps_in_sqrt=eps_in_sqrt,
    initial_scale=initial_scale,
  )
  rng = np.random.default_rng(6)
  grads = [
    jnp.asarray(rng.normal(size=16) * 10.0 ** rng.uniform(-2, 0, 16),
                jnp.float32)
    for _ in range(6)
  ]
  params = jnp.zeros(16, jnp.float32)
  out = []
  for safe in (False, True):
    tx = optax_rmsprop.rmsprop(**kwargs, safe_numerics=safe)
    state = tx.init(params)
    for g in grads:
      updates, state = tx.update(g, state, params)
    out.append(np.asarray(updates))
  np.testing.assert_allclose(out[1], out[0], rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("nesterov", [False, True])
def test_low_precision_momentum_is_optax_trace_computed_in_float32(nesterov):
  """float16 updates with a float32 buffer take this package's momentum
  arithmetic (optax's trace would promote them): m = u + β m, and
  u + β m for nesterov, as optax.trace computes on the float32 values."""
  rng = np.random.default_rng(7)
  grads = [jnp.asarray(rng.normal(size=8), jnp.float16) for _ in range(5)]
  tx = optax_rmsprop.momentum(0.9, nesterov=nesterov,
                              accumulator_dtype=jnp.float32)
  ref = optax.trace(0.9, nesterov=nesterov)
  state = tx.init(jnp.zeros(8, jnp.float16))
  ref_state = ref.init(jnp.zeros(8, jnp.float32))
  for g in grads:
    updates, state = tx.update(g, state)
    ref_updates, ref_state = ref.update(g.astype(jnp.float32), ref_state)
  assert updates.dtype == jnp.float16 and state.trace.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(state.trace), ref_state.trace,
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(updates, np.float32),
                             np.asarray(ref_updates.astype(jnp.float16),
                                        np.float32), rtol=1e-3)
