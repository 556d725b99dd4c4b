"""`rmsprop` is a drop-in for `optax.rmsprop`: same arguments, same numbers."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop
from configs import SHARED_WITH_OPTAX
from configs import case_id
import trajectories


def test_positional_signature_matches_optax():
  ours = list(inspect.signature(optax_rmsprop.rmsprop).parameters.values())
  theirs = list(inspect.signature(optax.rmsprop).parameters.values())
  assert [(p.name, p.default) for p in ours[: len(theirs)]] == [
      (p.name, p.default) for p in theirs
  ]
  # Everything we add is keyword-only, so positional calls cannot shift.
  assert all(p.kind is p.KEYWORD_ONLY for p in ours[len(theirs):])


@pytest.mark.parametrize("case", SHARED_WITH_OPTAX, ids=case_id)
def test_bitwise_equal_to_optax(case):
  kwargs = dict(
      learning_rate=optax.exponential_decay(0.02, 10, 0.9),
      decay=0.95,
      eps=1e-6,
      initial_scale=0.1,
      **case,
  )
  params = trajectories.initial_params(dtype=np.float32)
  ours = trajectories.run_optax(optax_rmsprop.rmsprop(**kwargs), params, 100)
  theirs = trajectories.run_optax(optax.rmsprop(**kwargs), params, 100)
  for k in params:
    np.testing.assert_array_equal(ours[k], theirs[k])
  assert not np.allclose(ours["w"], params["w"])


def test_positional_call_equal_to_optax():
  args = (0.01, 0.8, 1e-5, 0.5, False, True, 0.5, True, True)
  params = trajectories.initial_params(dtype=np.float32)
  ours = trajectories.run_optax(optax_rmsprop.rmsprop(*args), params, 30)
  theirs = trajectories.run_optax(optax.rmsprop(*args), params, 30)
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)


def test_scale_by_rms_equal_to_optax_scalers():
  g = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6)), jnp.float32)
  for ours, theirs in [
      (optax_rmsprop.scale_by_rms(0.9, 1e-8),
       optax.scale_by_rms(0.9, 1e-8)),
      (optax_rmsprop.scale_by_rms(0.9, 1e-3, 1.0, False, bias_correction=True),
       optax.scale_by_rms(0.9, 1e-3, 1.0, False, bias_correction=True)),
      (optax_rmsprop.scale_by_rms(0.99, 1e-8, centered=True),
       optax.scale_by_stddev(0.99, 1e-8)),
  ]:
    s1, s2 = ours.init(g), theirs.init(g)
    for i in range(5):
      u1, s1 = jax.jit(ours.update)(g * (i - 2), s1)
      u2, s2 = jax.jit(theirs.update)(g * (i - 2), s2)
      np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(s1.nu, s2.nu)
