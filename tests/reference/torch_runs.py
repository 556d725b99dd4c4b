"""Runs of real ``torch.optim`` optimizers and of optax on the shared problem.

Unlike :mod:`reference.runner`, a run can start from given parameters and
optimizer state at any update number, so that a run moved between the two
frameworks mid-way can be compared with one that stays.
"""

from __future__ import annotations

from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from reference import problem


def torch_params(params: Optional[Dict[str, np.ndarray]] = None):
  """The problem's params (or ``params``) as a dict of torch tensors."""
  params = problem.initial_params() if params is None else params
  return {k: torch.tensor(np.asarray(v)) for k, v in params.items()}


def train_torch(
    opt: torch.optim.Optimizer,
    params: Dict[str, torch.Tensor],
    steps: int,
    first_step: int = 0,
    scheduler=None,
    steps_per_epoch: int = 1,
    sign: float = 1.0,
) -> np.ndarray:
  """Updates ``params`` in place; flat trajectory, shape (steps, n).

  The scheduler, if any, steps after every ``steps_per_epoch`` updates (1:
  after each update).
  """
  trajectory = []
  for t in range(first_step, first_step + steps):
    grads = problem.gradient({k: p.numpy() for k, p in params.items()}, t, sign)
    for k, p in params.items():
      p.grad = torch.from_numpy(grads[k])
    opt.step()
    if scheduler is not None and (t + 1) % steps_per_epoch == 0:
      scheduler.step()
    trajectory.append(
        problem.flatten({k: p.numpy() for k, p in params.items()}))
  return np.stack(trajectory)


def train_optax(
    tx: optax.GradientTransformation,
    params,
    state,
    steps: int,
    first_step: int = 0,
    sign: float = 1.0,
):
  """(params, state, flat trajectory of shape (steps, n)) after ``steps``
  jitted updates from ``params`` and ``state`` at update ``first_step``."""

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = jax.tree.map(jnp.asarray, params)
  trajectory = []
  for t in range(first_step, first_step + steps):
    host = jax.device_get(params)
    params, state = step(params, state, problem.gradient(host, t, sign))
    trajectory.append(problem.flatten(jax.device_get(params)))
  return params, state, np.stack(trajectory)
