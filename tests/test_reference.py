"""`rmsprop` against the NumPy reference of its equations, over trajectories."""

import itertools

import hypothesis
from hypothesis import strategies as st
import jax
import numpy as np
import pytest

import optax_rmsprop
from numpy_reference import Config
import trajectories

STEPS = 120


def schedule(count):
  return 0.05 * 0.98**count  # works on ints (NumPy) and int32 arrays (JAX)


# Every option on its own and in the combinations where they interact.
CONFIGS = {
    "plain": Config(),
    "eps_outside": Config(eps_in_sqrt=False, eps=1e-3),
    "large_eps": Config(eps=0.1),
    "initial_scale": Config(initial_scale=1.0, eps=1e-10),
    "centered": Config(centered=True),
    "centered_eps_outside": Config(centered=True, eps_in_sqrt=False),
    "bias_correction": Config(bias_correction=True),
    "centered_bias_correction": Config(
        centered=True, bias_correction=True, eps=1e-4
    ),  # step 1 has ν̂ − μ̂² = 0: a tiny ε would make it ill-conditioned
    "momentum": Config(momentum=0.9),
    "momentum_zero": Config(momentum=0.0),
    "nesterov": Config(momentum=0.9, nesterov=True),
    "momentum_lr_outside": Config(momentum=0.9, lr_in_momentum=False),
    "nesterov_lr_outside": Config(
        momentum=0.8, nesterov=True, lr_in_momentum=False
    ),
    "schedule_momentum": Config(learning_rate=schedule, momentum=0.9),
    "schedule_momentum_lr_outside": Config(
        learning_rate=schedule, momentum=0.9, lr_in_momentum=False
    ),
    "coupled_decay": Config(coupled_weight_decay=0.01),
    "decoupled_decay": Config(decoupled_weight_decay=0.01),
    "decoupled_decay_momentum_schedule": Config(
        learning_rate=schedule, decoupled_weight_decay=0.1, momentum=0.9
    ),
    "maximize": Config(maximize=True, coupled_weight_decay=0.01),
    "decay_zero": Config(decay=0.0, eps=1e-4),
    "decay_one": Config(decay=1.0, initial_scale=2.0),
    "everything": Config(
        learning_rate=schedule,
        decay=0.95,
        eps=1e-4,
        initial_scale=0.5,
        eps_in_sqrt=False,
        centered=True,
        momentum=0.7,
        nesterov=True,
        bias_correction=True,
        lr_in_momentum=False,
        decoupled_weight_decay=0.01,
        coupled_weight_decay=0.02,
        maximize=True,
    ),
}


def check(config: Config, dtype, rtol: float, steps: int = STEPS):
  params = trajectories.initial_params(dtype=dtype)
  tx = optax_rmsprop.rmsprop(**config.kwargs())
  actual = trajectories.run_optax(tx, params, steps)
  desired = trajectories.run_reference(config, params, steps)
  deviation = trajectories.max_relative_deviation(actual, desired)
  assert deviation <= rtol, f"max relative deviation {deviation:.3g}"
  # The run must actually have moved, or the comparison proves nothing.
  moved = trajectories.max_relative_deviation(actual, params)
  assert moved > 10 * rtol


@pytest.mark.parametrize("name", CONFIGS)
def test_float64_trajectory_matches_reference(name):
  with jax.enable_x64(True):
    check(CONFIGS[name], np.float64, rtol=1e-10)


@pytest.mark.parametrize(
    "name", ["plain", "centered", "nesterov_lr_outside", "everything"]
)
def test_float32_trajectory_matches_reference(name):
  check(CONFIGS[name], np.float32, rtol=2e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "eps_in_sqrt,centered,momentum,lr_in_momentum,bias_correction",
    list(
        itertools.product(
            [True, False], [True, False], [None, 0.9], [True, False],
            [True, False],
        )
    ),
)
def test_float64_full_grid(
    eps_in_sqrt, centered, momentum, lr_in_momentum, bias_correction
):
  config = Config(
      learning_rate=schedule,
      # ν₀ > 0 keeps step 1 of centered + bias_correction off ν̂ − μ̂² = 0,
      # where √(rounding) / ε makes any two implementations differ by ~1e-4.
      initial_scale=0.1,
      eps_in_sqrt=eps_in_sqrt,
      centered=centered,
      momentum=momentum,
      lr_in_momentum=lr_in_momentum,
      bias_correction=bias_correction,
  )
  with jax.enable_x64(True):
    check(config, np.float64, rtol=1e-10, steps=500)


configs = st.builds(
    Config,
    learning_rate=st.floats(1e-4, 0.1),
    decay=st.floats(0.5, 0.999),
    eps=st.sampled_from([0.0, 1e-10, 1e-8, 1e-4, 0.1]),
    initial_scale=st.sampled_from([0.0, 0.1, 1.0]),
    eps_in_sqrt=st.booleans(),
    centered=st.booleans(),
    momentum=st.one_of(st.none(), st.floats(0.0, 0.95)),
    bias_correction=st.booleans(),
    lr_in_momentum=st.booleans(),
    coupled_weight_decay=st.one_of(st.none(), st.floats(0.0, 0.1)),
    decoupled_weight_decay=st.one_of(st.none(), st.floats(0.0, 0.1)),
    maximize=st.booleans(),
)


@hypothesis.settings(max_examples=8, deadline=None, derandomize=True)
@hypothesis.given(config=configs, x64=st.booleans())
def test_property_random_configs(config, x64):
  """Random configs: float64 agrees tightly, float32 to rounding."""
  if config.momentum is not None:
    config.nesterov = config.momentum > 0.5
  if config.centered:
    # Near-constant gradients drive ν − μ² to 0; with a tiny ε the step
    # g/√ε is then ill-conditioned for any two correct implementations.
    config.eps = max(config.eps, 1e-4)
    if config.bias_correction:
      config.eps = max(config.eps, 0.1)  # step 1: ν̂ − μ̂² is exactly 0
  with jax.enable_x64(x64):
    if x64:
      check(config, np.float64, rtol=1e-9, steps=60)
    else:
      check(config, np.float32, rtol=2e-3, steps=60)  # f32 vs f64 rounding


@hypothesis.settings(max_examples=10, deadline=None, derandomize=True)
@hypothesis.given(
    seed=st.integers(0, 2**31 - 1),
    log_scale=st.floats(-6.0, 6.0),
    centered=st.booleans(),
    eps_in_sqrt=st.booleans(),
)
def test_property_random_gradient_sequences(
    seed, log_scale, centered, eps_in_sqrt
):
  """Arbitrary gradient sequences over 12 orders of magnitude, in float64."""
  rng = np.random.default_rng(seed)
  grads = rng.standard_normal((50, 6)) * 10.0**log_scale
  grads *= rng.random((50, 6)) < 0.8  # sprinkle exact zeros
  config = Config(centered=centered, eps_in_sqrt=eps_in_sqrt, momentum=0.5)
  tx = optax_rmsprop.rmsprop(**config.kwargs())
  from numpy_reference import NumpyRMSprop

  ref = NumpyRMSprop(config, np.zeros(6))
  desired = np.zeros(6)
  for g in grads:
    desired = ref.step(desired, g)
  with jax.enable_x64(True):

    @jax.jit
    def run(grads):
      def body(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        return (p + u, s), None

      p0 = jax.numpy.zeros(6)
      return jax.lax.scan(body, (p0, tx.init(p0)), grads)[0][0]

    actual = np.asarray(run(grads))
  np.testing.assert_allclose(actual, desired, rtol=1e-9, atol=1e-12)
