"""Bit for bit with `optax.rmsprop` in the step users write, by construction.

The gradient, the update and `apply_updates` in one `jax.jit`, or a
`lax.scan` over such steps: XLA fuses the gradient's arithmetic into the
update's and decides which multiply-adds become FMAs from the whole graph, so
matching optax's formula is not enough; the program must be optax's. The
first tests compare the lowered StableHLO of whole training steps (the same
program gives the same bits on every backend); the others train a small MLP
and a quadratic (leaves of 4099 and 17 elements) and compare the bits, under
`jax.jit`, `lax.scan` and eagerly.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop
from configs import SHARED_WITH_OPTAX as SHARED
from configs import case_id

COVERING = SHARED[::3]  # every switch both ways, for the compiled runs
STEPS = 60


def mlp_loss(params, x):
  """A two-layer tanh MLP regressing sin: leaves of 4099 and 17 elements."""
  h = jnp.tanh(x[:, None] * params["w1"][None, :17] + params["b"])
  y = h @ params["w1"][17:34] + jnp.sum(params["w1"][34:] ** 2) * 1e-3
  return jnp.mean((y - jnp.sin(3 * x)) ** 2)


def quadratic_loss(params, x):
  del x
  return sum(
      jnp.sum(jnp.linspace(0.1, 10.0, p.size, dtype=p.dtype) * (p - 1) ** 2)
      for p in jax.tree.leaves(params)
  )


def initial_params(dtype):
  rng = np.random.default_rng(0)
  return {
      "w1": jnp.asarray(rng.normal(size=4099) * 0.5, dtype),
      "b": jnp.asarray(rng.normal(size=17) * 0.1, dtype),
  }


def train_step(tx, loss):
  def step(params, state, x):
    grads = jax.grad(loss)(params, x)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


def scanned(tx, loss):
  step = train_step(tx, loss)

  def run(params, state, xs):
    body = lambda carry, x: (step(*carry, x), None)
    return jax.lax.scan(body, (params, state), xs)[0]

  return run


def stablehlo(fn, *args) -> str:
  text = jax.jit(fn).lower(*args).as_text()
  return re.sub(r"\s*loc\(.*?\)|#loc\d*.*", "", text)


def batches(dtype, steps=STEPS):
  return jnp.asarray(
      np.random.default_rng(1).uniform(-2, 2, (steps, 64)), dtype
  )


def kwargs(case, schedule=False):
  lr = optax.exponential_decay(0.01, 10, 0.9) if schedule else 0.01
  return dict(learning_rate=lr, **case)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", SHARED, ids=case_id)
def test_training_step_lowers_to_optax_program(case, dtype):
  """Each of the 40 shared configurations: a jitted step (gradient inside)
  and a scan over steps lower to the same StableHLO as optax.rmsprop's."""
  with jax.enable_x64(dtype == "float64"):
    params, xs = initial_params(dtype), batches(dtype)
    for make_fn in (train_step, scanned):
      programs = []
      for make in (optax_rmsprop.rmsprop, optax.rmsprop):
        tx = make(**kwargs(case, schedule=case["centered"]))
        fn = make_fn(tx, mlp_loss)
        args = (params, tx.init(params), xs[0] if fn.__name__ == "step" else xs)
        programs.append(stablehlo(fn, *args))
      assert programs[0] == programs[1]


@pytest.mark.parametrize("case", COVERING, ids=case_id)
def test_injected_hyperparams_lower_to_optax_program(case):
  """optax.inject_hyperparams over ours and over optax's: the same program
  (array hyperparameters of the params' dtype need no cast)."""
  params, xs = initial_params("float32"), batches("float32")
  programs = []
  for make in (optax_rmsprop.rmsprop, optax.rmsprop):
    tx = optax.inject_hyperparams(make)(**kwargs(case), decay=0.95, eps=1e-7)
    programs.append(
        stablehlo(scanned(tx, mlp_loss), params, tx.init(params), xs)
    )
  assert programs[0] == programs[1]


def test_eager_update_is_optax_op_sequence():
  """Eagerly each op runs on its own: the traced op sequence of `update`
  must be optax's (same primitives, same order, same constants)."""
  params = initial_params("float32")
  grads = jax.grad(mlp_loss)(params, batches("float32")[0])
  for case in SHARED:
    jaxprs = []
    for make in (optax_rmsprop.rmsprop, optax.rmsprop):
      tx = make(**kwargs(case))
      jaxprs.append(str(jax.make_jaxpr(tx.update)(grads, tx.init(params), params)))
    assert jaxprs[0] == jaxprs[1], case


def train(make, case, loss, dtype, mode, steps=STEPS):
  tx = make(**kwargs(case))
  params, xs = initial_params(dtype), batches(dtype, steps)
  state = tx.init(params)
  if mode == "scan":
    return jax.jit(scanned(tx, loss))(params, state, xs)
  step = train_step(tx, loss)
  step = jax.jit(step) if mode == "jit" else step
  for x in xs:
    params, state = step(params, state, x)
  return params, state


@pytest.mark.parametrize("mode", ["jit", "scan", "eager"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", COVERING, ids=case_id)
def test_trained_params_and_state_are_optax_bits(case, dtype, mode):
  steps = 8 if mode == "eager" else STEPS
  with jax.enable_x64(dtype == "float64"):
    for loss in (mlp_loss, quadratic_loss):
      ours = train(optax_rmsprop.rmsprop, case, loss, dtype, mode, steps)
      theirs = train(optax.rmsprop, case, loss, dtype, mode, steps)
      moved = jax.tree.map(lambda a, b: np.any(a != b), ours[0],
                           initial_params(dtype))
      assert all(jax.tree.leaves(moved))  # the run did train
      jax.tree.map(np.testing.assert_array_equal, ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["jit", "scan", "eager"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", SHARED, ids=case_id)
def test_trained_params_and_state_are_optax_bits_full_grid(case, dtype, mode):
  test_trained_params_and_state_are_optax_bits(case, dtype, mode)


@pytest.mark.parametrize("make", [optax_rmsprop.rmsprop,
                                  optax_rmsprop.torch_rmsprop])
def test_float64_hyperparameters_keep_float32_state_under_x64(make):
  """NumPy and JAX float64 hyperparameters under jax_enable_x64: the state
  keeps its float32 dtypes (a lax.scan carry would reject a change), and a
  NumPy float64 gives the numbers of the equal Python float."""
  with jax.enable_x64(True):
    params = initial_params("float32")
    xs = batches("float32", 5)
    args = dict(centered=True, momentum=0.5)
    if make is optax_rmsprop.rmsprop:
      numpy_hp = dict(learning_rate=np.float64(0.01), decay=np.float64(0.9),
                      eps=np.float64(1e-6), momentum=np.float64(0.5),
                      centered=True, nu_dtype=jnp.float32)
      jax_hp = dict(numpy_hp, decay=jnp.float64(0.9), momentum=jnp.float64(0.5))
      python_hp = dict(learning_rate=0.01, decay=0.9, eps=1e-6, **args)
    else:
      numpy_hp = dict(lr=np.float64(0.01), alpha=np.float64(0.9),
                      eps=np.float64(1e-6), momentum=np.float64(0.5),
                      centered=True)
      jax_hp = dict(numpy_hp, alpha=jnp.float64(0.9), momentum=jnp.float64(0.5))
      python_hp = dict(lr=0.01, alpha=0.9, eps=1e-6, **args)
    results = {}
    for name, hp in (("numpy", numpy_hp), ("jax", jax_hp),
                     ("python", python_hp)):
      tx = make(**hp)
      state = tx.init(params)
      dtypes = jax.tree.map(lambda x: x.dtype, state)
      results[name] = jax.jit(scanned(tx, mlp_loss))(params, state, xs)
      assert jax.tree.map(lambda x: x.dtype, results[name][1]) == dtypes
      assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(results[name][0]))
    jax.tree.map(np.testing.assert_array_equal, results["numpy"],
                 results["python"])
