"""`cautious` against timm's ``_apply_caution`` (NumPy transcription).

timm masks the buffer ``m`` it subtracts from the params where ``m * g <= 0``
and divides by the mask's mean clamped at 1e-3; optax adds ``u = -m``, so the
same coordinates are those with ``u * g >= 0``. The transcription is in
tests/reference/timm_rmsprop_tf.py; the preset ``timm_rmsprop_tf(caution=
True)`` is tested against all of timm's step in test_presets_timm.py.
"""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop
from reference import timm_rmsprop_tf as timm_reference

SHAPES = {"a": (13, 7), "b": (5000,), "c": ()}


def _heavy_ball(lr, beta):
  """timm's momentum step in optax's sign: u = -lr * (beta m + g)."""
  return optax.chain(optax.trace(beta), optax.scale(-lr))


@pytest.mark.parametrize("jit", [True, False])
def test_matches_timm_apply_caution_over_many_steps(jit):
  rng = np.random.default_rng(0)
  lr, beta = 0.1, 0.9
  tx = optax_rmsprop.tools.cautious(_heavy_ball(lr, beta))
  update = jax.jit(tx.update) if jit else tx.update
  params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
  state = tx.init(params)
  buf = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
  kept = []
  for _ in range(30):
    # Gradients that often flip sign, so the mask keeps about half.
    grads = {k: rng.normal(size=s).astype(np.float32)
             for k, s in SHAPES.items()}
    updates, state = update(grads, state)
    for k in SHAPES:
      buf[k] = grads[k] + np.float32(beta) * buf[k]
      expected = -timm_reference.apply_caution(
          np.float32(lr) * buf[k], grads[k])
      # XLA may fuse the trace's multiply-add: an ulp of the buffer's terms
      # (|g| <= 5, |buffer| <= 50) where they cancel, times lr x 2.
      np.testing.assert_allclose(updates[k], expected, rtol=1e-6, atol=2e-6,
                                 err_msg=k)
      np.testing.assert_array_equal(np.asarray(updates[k]) == 0,
                                    expected == 0)
      kept.append(np.mean(np.asarray(updates[k]) != 0))
      # The buffer in the state is never masked (as in timm).
      np.testing.assert_allclose(state[0].trace[k], buf[k], rtol=1e-6,
                                 atol=1e-5)
  assert 0.3 < np.mean(kept) < 0.8  # the mask did something


def test_mean_is_per_leaf_and_floored():
  g = {"few": jnp.ones(5000), "none": jnp.ones(4), "all": jnp.ones(3)}
  u = {"few": jnp.ones(5000).at[0].set(-1.0),  # one of 5000 descends
       "none": jnp.ones(4), "all": -jnp.ones(3)}
  tx = optax_rmsprop.tools.cautious(optax.stateless(lambda updates, _: u))
  out, _ = tx.update(g, tx.init(g))
  # 1/5000 kept: the gain is 1/1e-3, not 5000.
  np.testing.assert_allclose(out["few"][0], -1000.0, rtol=1e-6)
  np.testing.assert_array_equal(out["few"][1:], 0.0)
  np.testing.assert_array_equal(out["none"], 0.0)  # all uphill: zero, no NaN
  np.testing.assert_array_equal(out["all"], -1.0)  # all kept: unchanged


def test_complex_leaves_use_the_real_part_of_the_product():
  g = jnp.array([1 + 1j, 1 + 1j, 1j])
  u = jnp.array([-1 + 0j, 1 - 2j, 1 + 0j])  # Re(u conj g): -1, -1, 0
  tx = optax_rmsprop.tools.cautious(optax.stateless(lambda updates, _: u))
  out, _ = tx.update(g, tx.init(g))
  np.testing.assert_allclose(out, u * jnp.array([1.5, 1.5, 0.0]), rtol=1e-6)


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=40),
    st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=40),
)
def test_a_cautious_update_never_ascends(us, gs):
  """<u', g> <= 0 whatever the inner update: the paper's guarantee."""
  n = min(len(us), len(gs))
  u = np.asarray(us[:n], np.float32)
  g = np.asarray(gs[:n], np.float32)
  tx = optax_rmsprop.tools.cautious(
      optax.stateless(lambda updates, _: jnp.asarray(u)))
  out, _ = tx.update(jnp.asarray(g), tx.init(jnp.asarray(g)))
  assert float(np.dot(np.asarray(out, np.float64), g)) <= 0.0


def test_floor_must_be_positive():
  with pytest.raises(ValueError, match="floor"):
    optax_rmsprop.tools.cautious(optax.identity(), floor=0.0)
  with pytest.raises(ValueError, match="floor"):
    optax_rmsprop.tools.cautious(optax.identity(), floor=-1.0)
