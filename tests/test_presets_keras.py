"""`keras_rmsprop` against real Keras 3 ``keras.optimizers.RMSprop`` (JAX).

Both run the shared problem (tests/reference/problem.py) for 500 calls (600
with gradient accumulation: 200 updates), each side's gradient evaluated at
its own params; Keras runs ``stateless_apply`` under ``jax.jit``
(tests/reference/keras_runs.py). Measured deviations are in
docs/porting.md: at most 3.5e-6, with weight decay, where Keras rounds the
parameter twice per step (``p - p·λ·η``, then ``- increment``) and optax
once (``p + update``). Every base-optimizer option is compared the same way,
and shown to matter: the preset without it is far off. Gradient accumulation
is also compared in float64, where it agrees to 1e-13.
"""

import functools
import inspect
import itertools

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest

import optax_rmsprop
from reference import keras_rmsprop as keras_reference
from reference import keras_runs
from reference import problem
from reference import runner
from reference import schedules

TOLERANCE = 1e-5
LR = keras_runs.LR


def run_keras(kwargs, schedule="constant", lr=LR):
  """Flat trajectory of keras.optimizers.RMSprop over problem.STEPS calls."""
  return keras_runs.KerasRun(kwargs, schedule, lr).run(problem.STEPS)[0]


def _deviation(kwargs, schedule):
  expected = run_keras(kwargs, schedule)
  tx = optax_rmsprop.keras_rmsprop(
      learning_rate=schedules.optax_schedule(schedule, LR), **kwargs)
  return problem.max_relative_deviation(runner.run_optax(tx), expected)


# Momentum, centered and weight decay together: test_option_matches_keras.
DEFAULT_CONFIGS = [
    ({"momentum": 0.9}, "drop"),
    ({"centered": True, "epsilon": 0.1}, "constant"),
    ({"weight_decay": 0.004}, "warmup_cosine"),
]

FULL_GRID = [
    ({"momentum": m, "centered": c, "weight_decay": w, "epsilon": e}, s)
    for m, c, w, e, s in itertools.product(
        [0.0, 0.9], [False, True], [None, 0.004], [1e-7, 0.1],
        schedules.KINDS)
]


@pytest.mark.parametrize("kwargs,schedule", DEFAULT_CONFIGS)
def test_matches_keras(kwargs, schedule):
  deviation = _deviation(kwargs, schedule)
  print(f"keras {kwargs} {schedule}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("kwargs,schedule", FULL_GRID)
def test_matches_keras_full_grid(kwargs, schedule):
  deviation = _deviation(kwargs, schedule)
  print(f"keras {kwargs} {schedule}: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_framework_defaults_match():
  expected = run_keras({}, lr=None)  # Keras' own lr 0.001, rho 0.9, eps 1e-7
  actual = runner.run_optax(optax_rmsprop.keras_rmsprop())
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"keras defaults: max rel dev {deviation:.2e}")
  assert deviation <= TOLERANCE


def test_numpy_reference_matches_keras():
  kwargs = {"momentum": 0.9, "centered": True, "weight_decay": 0.004,
            "epsilon": 0.1}
  expected = run_keras(kwargs, "drop")
  reference = problem.run_reference(
      keras_reference.RMSprop(expected.shape[1], **kwargs),
      schedules.python("drop", LR))
  assert problem.max_relative_deviation(reference, expected) <= 2e-6


@pytest.mark.parametrize("kwargs,wrong", [
    # ε outside the root instead of inside.
    ({"epsilon": 0.1}, {"eps_in_sqrt": False}),
    # Weight decay as L2 on the gradient instead of decoupled.
    ({"weight_decay": 0.004},
     {"decoupled_weight_decay": None, "coupled_weight_decay": 0.004}),
])
def test_a_wrong_convention_is_caught(kwargs, wrong):
  """The comparison can fail: one changed convention is far off."""
  expected = run_keras(kwargs)
  options = dict(learning_rate=LR, decay=0.9, eps=kwargs.get("epsilon", 1e-7),
                 decoupled_weight_decay=kwargs.get("weight_decay"))
  options.update(wrong)
  actual = runner.run_optax(optax_rmsprop.rmsprop(**options))
  assert problem.max_relative_deviation(actual, expected) > 1e-3


# --- Keras' base-optimizer options -----------------------------------------

# Each option on top of momentum, centered and weight decay together (the
# slow grid below takes each of them on and off): option id -> (the option's
# kwargs, base kwargs it changes, schedule).
BASE = {"momentum": 0.9, "centered": True, "weight_decay": 0.004}
OPTIONS = {
    "clipnorm": ({"clipnorm": 2.0}, {}, "exponential"),
    "clipvalue": ({"clipvalue": 1.0}, {}, "exponential"),
    "global_clipnorm": ({"global_clipnorm": 5.0}, {}, "exponential"),
    "use_ema": ({"use_ema": True, "ema_momentum": 0.9}, {}, "exponential"),
    "ema_overwrite_frequency": (
        {"use_ema": True, "ema_overwrite_frequency": 10}, {}, "exponential"),
    "exclude_from_weight_decay": (
        {"exclude_from_weight_decay": ["b"]}, {}, "exponential"),
    # Without ε RMSprop is nearly scale-invariant: unscaling would not show.
    "loss_scale_factor": ({"loss_scale_factor": 3.0}, {"epsilon": 0.1},
                          "exponential"),
    # A schedule that changes every call shows which count it is called with.
    "gradient_accumulation_steps": (
        {"gradient_accumulation_steps": 3}, {}, "warmup_cosine"),
    "accumulation_and_ema_overwrite": (
        {"gradient_accumulation_steps": 3, "use_ema": True,
         "ema_overwrite_frequency": 3}, {}, "warmup_cosine"),
}


def _calls(kwargs):
  # >= 200 updates: with accumulation over k calls, 200 k calls.
  return max(problem.STEPS, 200 * (kwargs.get("gradient_accumulation_steps")
                                   or 1))


def _run_ours(kwargs, schedule, calls, scale):
  tx = optax_rmsprop.keras_rmsprop(
      learning_rate=schedules.optax_schedule(schedule, LR), **kwargs)
  return keras_runs.OptaxRun(tx).run(calls, scale)


@functools.lru_cache(maxsize=None)
def _run_ours_cached(kwargs_items, schedule, calls, scale):
  return _run_ours(dict(kwargs_items), schedule, calls, scale)


def _deviations(actual, expected):
  """(params, EMA) max relative deviations; the EMA from call 1 (0 before)."""
  params = problem.max_relative_deviation(actual[0], expected[0])
  if expected[1] is None:
    return params, 0.0
  ema = actual[1] if actual[1] is not None else actual[0]
  return params, problem.max_relative_deviation(ema[1:], expected[1][1:])


def _check_option(option, base, schedule, check_effect):
  kwargs = {**base, **option}
  keras_kwargs = dict(kwargs)
  exclude = keras_kwargs.pop("exclude_from_weight_decay", None)
  scale = kwargs.get("loss_scale_factor") or 1.0
  calls = _calls(kwargs)
  expected = keras_runs.KerasRun(keras_kwargs, schedule, exclude=exclude).run(
      calls, scale)
  params, ema = _deviations(_run_ours(kwargs, schedule, calls, scale),
                            expected)
  print(f"keras {kwargs} {schedule}: max rel dev {params:.2e}, EMA {ema:.2e}")
  assert params <= TOLERANCE and ema <= TOLERANCE
  if check_effect:
    # Without the option the preset is far off: the comparison sees it.
    without = _run_ours_cached(
        tuple(sorted(base.items())), schedule, calls, scale)
    assert max(_deviations(without, expected)) > 100 * TOLERANCE


@pytest.mark.parametrize("name", list(OPTIONS))
def test_option_matches_keras(name):
  option, changes, schedule = OPTIONS[name]
  _check_option(option, {**BASE, **changes}, schedule, check_effect=True)


OPTION_GRID = [
    (name, {"momentum": m, "centered": c, "weight_decay": w},
     schedules.KINDS[i % len(schedules.KINDS)])
    for i, (name, m, c, w) in enumerate(itertools.product(
        OPTIONS, [0.0, 0.9], [False, True], [None, 0.004]))
]


@pytest.mark.slow
@pytest.mark.parametrize("name,base,schedule", OPTION_GRID)
def test_option_matches_keras_grid(name, base, schedule):
  option, changes, _ = OPTIONS[name]
  base = {**base, **changes}
  if "exclude_from_weight_decay" in option and base["weight_decay"] is None:
    base["weight_decay"] = 0.04
  _check_option(option, base, schedule, check_effect=False)


def test_name_is_ignored():
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([0.3, 0.5])}
  results = []
  for name in (None, "my_optimizer"):
    tx = optax_rmsprop.keras_rmsprop(0.1, momentum=0.9, name=name)
    state = tx.init(params)
    for _ in range(3):
      updates, state = tx.update(grads, state, params)
    results.append((updates, state))
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, *results)))


@pytest.mark.parametrize("option", [
    {"clipnorm": 0.0}, {"clipvalue": 0}, {"global_clipnorm": 0.0},
    {"gradient_accumulation_steps": 0},
    {"use_ema": True, "ema_overwrite_frequency": 0},
])
def test_zero_turns_an_option_off_as_in_keras(option):
  """Keras clips only for a threshold > 0; 0 steps means no accumulation,
  no overwrite: the same transform as without the option."""
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = {"w": jnp.array([30.0, -50.0, 0.5])}  # clipped by any threshold
  base = {"momentum": 0.9, "use_ema": option.get("use_ema", False)}
  outputs = []
  for kwargs in (base, {**base, **option}):
    tx = optax_rmsprop.keras_rmsprop(0.1, **kwargs)
    state = tx.init(params)
    for _ in range(11):  # past an overwrite every 10
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)
    outputs.append((params, state))
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
  assert jax.tree.structure(outputs[0]) == jax.tree.structure(outputs[1])
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, *outputs)))


@pytest.mark.parametrize("kwargs,name", [
    ({"clipnorm": 1.0, "clipvalue": 1.0}, "Only one of clipnorm"),
    ({"clipvalue": 0.0, "global_clipnorm": 1.0}, "Only one of clipnorm"),
    ({"clipnorm": -1.0}, "clipnorm must be"),
    ({"clipvalue": -0.5}, "clipvalue must be"),
    ({"global_clipnorm": float("nan")}, "global_clipnorm must be"),
    ({"gradient_accumulation_steps": 1}, "gradient_accumulation_steps must"),
    ({"gradient_accumulation_steps": 2.5}, "gradient_accumulation_steps must"),
    ({"gradient_accumulation_steps": -2}, "gradient_accumulation_steps must"),
    ({"use_ema": True, "ema_momentum": 1.5}, "ema_momentum must be"),
    ({"use_ema": True, "ema_overwrite_frequency": -3},
     "ema_overwrite_frequency must"),
    ({"use_ema": True, "ema_overwrite_frequency": 2.5},
     "ema_overwrite_frequency must"),
    ({"loss_scale_factor": 0.0}, "loss_scale_factor must be"),
    ({"loss_scale_factor": -128.0}, "loss_scale_factor must be"),
])
def test_bad_argument_raises_naming_it(kwargs, name):
  with pytest.raises(ValueError, match=f"^{name}"):
    optax_rmsprop.keras_rmsprop(**kwargs)


def test_ema_arguments_are_not_checked_without_ema():
  # Keras validates ema_momentum and ema_overwrite_frequency only with EMA.
  optax_rmsprop.keras_rmsprop(ema_momentum=2.0, ema_overwrite_frequency=-1)


def test_exclude_from_weight_decay_matches_key_paths():
  """A zero gradient leaves only the decay: excluded leaves do not move."""
  params = {"dense": {"kernel": jnp.full(3, 2.0), "bias": jnp.full(2, 2.0)},
            "norm": {"scale": jnp.full(2, 2.0)}}
  grads = jax.tree.map(jnp.zeros_like, params)
  for exclude, frozen in [
      ("bias", {"dense/bias"}),
      (["bias", "^norm/"], {"dense/bias", "norm/scale"}),
      ([], set()),
  ]:
    tx = optax_rmsprop.keras_rmsprop(
        0.1, weight_decay=0.5, exclude_from_weight_decay=exclude)
    updates, _ = tx.update(grads, tx.init(params), params)
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
      key = jax.tree_util.keystr(path, simple=True, separator="/")
      want = 0.0 if key in frozen else -0.1 * 0.5 * 2.0
      np.testing.assert_allclose(u, want, rtol=1e-6, err_msg=key)


def test_schedule_sees_keras_iterations_under_accumulation():
  """Update j of k = 4 accumulated calls uses lr((j + 1) k - 1): Keras calls
  the schedule with its count of calls, 3, 7, 11, not of updates."""
  tx = optax_rmsprop.keras_rmsprop(
      optax.linear_schedule(0.0, 1.0, 100), gradient_accumulation_steps=4)
  params, state = jnp.ones(1), tx.init(jnp.ones(1))
  update = jax.jit(tx.update)
  nu, lrs = 0.0, []
  for call in range(12):
    updates, state = update(jnp.ones(1), state, params)
    if call % 4 != 3:
      assert float(updates[0]) == 0.0
      continue
    nu = 0.9 * nu + 0.1  # g = 1: |u| = lr / sqrt(nu + eps)
    lrs.append(-float(updates[0]) * np.sqrt(nu + 1e-7))
  np.testing.assert_allclose(lrs, [0.03, 0.07, 0.11], rtol=1e-5)


def test_all_options_eagerly_equal_jitted():
  tx = optax_rmsprop.keras_rmsprop(
      optax.exponential_decay(0.01, 1, 0.99), momentum=0.9, centered=True,
      weight_decay=0.01, global_clipnorm=1.0, use_ema=True,
      ema_overwrite_frequency=1, loss_scale_factor=4.0,
      gradient_accumulation_steps=2, exclude_from_weight_decay="b")
  params = {"b": jnp.linspace(-1.0, 1.0, 5), "w": jnp.linspace(0.5, 2.0, 6)}
  results = []
  for update in (tx.update, jax.jit(tx.update)):
    p, state = params, tx.init(params)
    for t in range(3):  # accumulate, update, accumulate; overwrite each
      grads = jax.tree.map(lambda x: jnp.cos(x * (t + 1)) * 4.0, params)
      updates, state = update(grads, state, p)
      p = optax.apply_updates(p, updates)
    results.append((p, state))
  # Up to XLA's FMA contraction under jit: one float32 rounding.
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
      *results)


# --- float64: gradient accumulation to rounding --------------------------

@pytest.fixture
def float64():
  """float64 on both sides: JAX's x64 and Keras' floatx (the dtype of its
  learning-rate variable), restored afterwards."""
  x64, floatx = jax.config.jax_enable_x64, keras.config.floatx()
  jax.config.update("jax_enable_x64", True)
  keras.config.set_floatx("float64")
  try:
    yield
  finally:
    keras.config.set_floatx(floatx)
    jax.config.update("jax_enable_x64", x64)


# Without accumulation float64 agrees to a few ulps (the sqrt and the divide
# are correctly rounded in both); a float32 partial sum is ~1e-9 off.
FLOAT64_TOLERANCE = 1e-13
ACCUMULATION_FLOAT64 = {
    "k4": {"gradient_accumulation_steps": 4},
    "k3": {"gradient_accumulation_steps": 3},
    "k3_momentum_global_clipnorm": {
        "gradient_accumulation_steps": 3, "momentum": 0.9,
        "global_clipnorm": 5.0},
    "k4_momentum_clipnorm": {
        "gradient_accumulation_steps": 4, "momentum": 0.9, "clipnorm": 2.0},
    "k3_centered_decay_clipvalue": {
        "gradient_accumulation_steps": 3, "centered": True,
        "weight_decay": 0.004, "clipvalue": 1.0},
}


@pytest.mark.parametrize("name", list(ACCUMULATION_FLOAT64))
def test_accumulation_matches_keras_in_float64(name, float64):
  """Keras accumulates in each variable's dtype (add_variable_from_reference),
  optax.MultiSteps in float32 unless told: the float64 sums are Keras'."""
  kwargs = ACCUMULATION_FLOAT64[name]
  calls = 50 * kwargs["gradient_accumulation_steps"]  # 50 updates
  expected, _ = keras_runs.KerasRun(kwargs, dtype=np.float64).run(calls)
  tx = optax_rmsprop.keras_rmsprop(learning_rate=LR, **kwargs)
  actual, _ = keras_runs.OptaxRun(tx, dtype=np.float64).run(calls)
  assert expected.dtype == actual.dtype == np.float64
  deviation = problem.max_relative_deviation(actual, expected)
  print(f"keras float64 {kwargs}: max rel dev {deviation:.2e}, max abs "
        f"{np.max(np.abs(actual - expected)):.2e}")
  assert deviation <= FLOAT64_TOLERANCE


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float64])
def test_accumulator_has_the_params_dtype(dtype, float64):
  """As Keras' accumulators, each leaf's: float32 would round float64 sums
  (and optax.MultiSteps' accumulator_dtype=None fails under jit unless the
  params have JAX's default float dtype). Stable over calls, under jit."""
  params = {"a": jnp.ones(3, dtype), "b": jnp.ones(2, jnp.float32)}
  tx = optax_rmsprop.keras_rmsprop(0.1, gradient_accumulation_steps=2)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(3):
    updates, state = update(params, state, params)
  acc = optax.tree_utils.tree_get(state, "acc_grads")
  assert acc["a"].dtype == dtype and acc["b"].dtype == jnp.float32
  assert jax.tree.map(lambda u: u.dtype, updates) == {
      "a": dtype, "b": jnp.float32}


def test_accumulation_calls_in_between_return_exact_zeros():
  """Keras keeps the params of an accumulating call whatever the gradient:
  the update is 0, not 0 times the step (NaN for an inf gradient)."""
  tx = optax_rmsprop.keras_rmsprop(0.1, gradient_accumulation_steps=2)
  params = jnp.ones(2)
  updates, state = tx.update(jnp.array([jnp.inf, 1.0]), tx.init(params),
                             params)
  np.testing.assert_array_equal(updates, 0.0)
  updates, state = tx.update(jnp.ones(2), state, params)
  assert not np.isfinite(updates[0]) and np.isfinite(updates[1])


def test_keras_preset_defaults_equal_keras_rmsprop_signature_defaults():
  theirs = inspect.signature(keras.optimizers.RMSprop).parameters
  ours = inspect.signature(optax_rmsprop.keras_rmsprop).parameters
  shared = [name for name in ours if name in theirs]
  assert {"learning_rate", "rho", "momentum", "epsilon", "centered"} <= set(
    shared
  )
  for name in shared:
    assert ours[name].default == theirs[name].default, name


def test_keras_default_epsilon_matters_for_tiny_gradients():
  """|g| ~ 1e-4: (1 - ρ) g² ~ 1e-9 is below ε = 1e-7, so the step depends
  on ε (1e-8 would give a ~3x larger first step)."""
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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"use_ema": True, "ema_overwrite_frequency": 2},
        {"gradient_accumulation_steps": 2},
        {"use_ema": True, "ema_overwrite_frequency": 2,
         "gradient_accumulation_steps": 2},
    ],
    ids=["ema", "accumulation", "ema-accumulation"],
)
def test_a_frozen_param_gets_none_updates_and_keeps_its_state(kwargs):
  """A None gradient (frozen param, which Keras' _filter_empty_gradients
  drops) gives a None update, on EMA overwrite steps too, and leaves its
  EMA and accumulator untouched; the other param steps as without it."""
  params = {"w": jnp.array([1.0, 2.0]), "frozen": jnp.array([3.0, -4.0])}
  tx = optax_rmsprop.keras_rmsprop(learning_rate=0.1, **kwargs)
  alone = optax_rmsprop.keras_rmsprop(learning_rate=0.1, **kwargs)
  state = tx.init(params)
  frozen_state = [
      leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state)
      if "frozen" in jax.tree_util.keystr(path)
  ]
  alone_state = alone.init({"w": params["w"]})
  for t in range(4):
    g = jnp.array([0.5, -1.0]) * (t + 1)
    updates, state = tx.update({"w": g, "frozen": None}, state, params)
    expected, alone_state = alone.update({"w": g}, alone_state,
                                         {"w": params["w"]})
    assert updates["frozen"] is None
    np.testing.assert_array_equal(updates["w"], expected["w"])
  after = [
      leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state)
      if "frozen" in jax.tree_util.keystr(path)
  ]
  for a, e in zip(after, frozen_state, strict=True):
    np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clipnorm": 1.0},
        {"clipvalue": 0.5},
        {"global_clipnorm": 1.0},
        {"loss_scale_factor": 2.0},
        {"use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 2},
    ],
    ids=lambda kw: next(iter(kw)),
)
def test_bfloat16_params_keep_their_dtype_with_float32_hyperparameters(kwargs):
  """inject_hyperparams makes the hyperparameters float32 for a tree mixing
  float32 and bfloat16 params: the bfloat16 updates and state stay bfloat16
  (no promotion, no dtype error), the float32 ones float32."""
  params = {"b": jnp.ones(3, jnp.bfloat16), "f": jnp.ones(2, jnp.float32)}
  grads = {"b": jnp.full(3, 0.7, jnp.bfloat16),
           "f": jnp.full(2, -0.3, jnp.float32)}
  tx = optax.inject_hyperparams(
      optax_rmsprop.keras_rmsprop,
      static_args=("use_ema", "ema_overwrite_frequency"),
  )(learning_rate=0.01, **kwargs)
  state = tx.init(params)
  dtypes = [x.dtype for x in jax.tree.leaves(state)]
  step = jax.jit(tx.update)
  for _ in range(2):
    updates, state = step(grads, state, params)
    assert updates["b"].dtype == jnp.bfloat16
    assert updates["f"].dtype == jnp.float32
    assert [x.dtype for x in jax.tree.leaves(state)] == dtypes


def test_clipvalue_clips_a_complex_gradients_real_and_imaginary_parts():
  """Keras has no complex variables; jnp.clip refuses complex values, so
  clipvalue clips the real and imaginary parts each (as a real pair)."""
  params = jnp.ones(2, jnp.complex64)
  grads = jnp.array([3 - 0.2j, -0.1 + 4j], jnp.complex64)
  tx = optax_rmsprop.keras_rmsprop(learning_rate=0.01, clipvalue=0.5)
  plain = optax_rmsprop.keras_rmsprop(learning_rate=0.01)
  updates, _ = tx.update(grads, tx.init(params), params)
  clipped = jnp.array([0.5 - 0.2j, -0.1 + 0.5j], jnp.complex64)
  expected, _ = plain.update(clipped, plain.init(params), params)
  assert updates.dtype == jnp.complex64
  np.testing.assert_array_equal(updates, expected)
