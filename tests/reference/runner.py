"""Runs an optax transformation on the shared problem, one jitted step each."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from reference import problem


def run_optax(tx: optax.GradientTransformation, steps: int = problem.STEPS,
              sign: float = 1.0) -> np.ndarray:
  """Flat parameter trajectory, shape (steps + 1, n), of ``tx`` under jit.

  The gradient is the NumPy one, evaluated at the params the previous jitted
  step returned, exactly as the framework side gets it.
  """

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = jax.tree.map(jnp.asarray, problem.initial_params())
  state = tx.init(params)
  host = problem.initial_params()
  trajectory = [problem.flatten(host)]
  for t in range(steps):
    params, state = step(params, state, problem.gradient(host, t, sign))
    host = jax.device_get(params)
    trajectory.append(problem.flatten(host))
  return np.stack(trajectory)
