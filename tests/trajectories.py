"""Runs an optax transformation and the NumPy reference over the same problem.

The gradient depends on the parameters (and couples the leaves), so any
difference between the two compounds over the trajectory instead of washing
out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import numpy_reference

SHAPES = {"b": (5,), "w": (3, 4)}


def initial_params(seed: int = 0, dtype=np.float64) -> dict:
  rng = np.random.default_rng(seed)
  return {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}


def _targets(xp, dtype):
  # Fixed, so both implementations see the same loss.
  return {
      k: xp.asarray(np.linspace(-1.5, 2.0, int(np.prod(s))).reshape(s), dtype)
      for k, s in SHAPES.items()
  }


def gradient(params: dict, xp=np) -> dict:
  """∇ of Σ softplus(a − p), scaled by 1 + 0.1·cos(Σp).

  Parameter-dependent and coupling the leaves, but never changing sign: near
  a sign change RMSprop's step g/√ν is chaotic (tiny ν, steps of ±lr), so
  rounding differences would grow exponentially for any two correct
  implementations; here they stay at rounding level.
  """
  dtype = params["w"].dtype
  targets = _targets(xp, dtype)
  total = sum(xp.sum(p) for p in params.values())
  coupling = 1 + 0.1 * xp.cos(total)
  return {
      k: -coupling / (1 + xp.exp(p - targets[k])) for k, p in params.items()
  }


def run_optax(tx: optax.GradientTransformation, params: dict, steps: int):
  """Final params after ``steps`` jitted updates (one compile, lax.scan)."""

  @jax.jit
  def run(params):
    def body(carry, _):
      params, state = carry
      grads = gradient(params, xp=jnp)
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, steps)
    return params

  return jax.tree.map(np.asarray, run(jax.tree.map(jnp.asarray, params)))


def run_reference(
    config: numpy_reference.Config, params: dict, steps: int, dtype=np.float64
) -> dict:
  opts = {
      k: numpy_reference.NumpyRMSprop(config, p, dtype)
      for k, p in params.items()
  }
  params = {k: p.astype(dtype) for k, p in params.items()}
  for _ in range(steps):
    grads = gradient(params)
    params = {k: opts[k].step(params[k], grads[k]) for k in params}
  return params


def max_relative_deviation(actual: dict, desired: dict) -> float:
  return max(
      float(np.max(np.abs(actual[k] - desired[k]) / (np.abs(desired[k]) + 1e-3)))
      for k in desired
  )
