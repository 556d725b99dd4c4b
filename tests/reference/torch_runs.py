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
    complex_params: bool = False,
) -> np.ndarray:
  """Updates ``params`` in place; flat trajectory, shape (steps, n).

  The scheduler, if any, steps after every ``steps_per_epoch`` updates (1:
  after each update). ``complex_params``: the params are complex
  (:func:`as_complex`).
  """
  gradient, flatten = _problem(complex_params)
  trajectory = []
  for t in range(first_step, first_step + steps):
    grads = gradient({k: p.numpy() for k, p in params.items()}, t, sign)
    for k, p in params.items():
      p.grad = torch.from_numpy(grads[k])
    opt.step()
    if scheduler is not None and (t + 1) % steps_per_epoch == 0:
      scheduler.step()
    trajectory.append(flatten({k: p.numpy() for k, p in params.items()}))
  return np.stack(trajectory)


def train_optax(
    tx: optax.GradientTransformation,
    params,
    state,
    steps: int,
    first_step: int = 0,
    sign: float = 1.0,
    complex_params: bool = False,
):
  """(params, state, flat trajectory of shape (steps, n)) after ``steps``
  jitted updates from ``params`` and ``state`` at update ``first_step``."""
  gradient, flatten = _problem(complex_params)

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = jax.tree.map(jnp.asarray, params)
  trajectory = []
  for t in range(first_step, first_step + steps):
    host = jax.device_get(params)
    params, state = step(params, state, gradient(host, t, sign))
    trajectory.append(flatten(jax.device_get(params)))
  return params, state, np.stack(trajectory)


def _problem(complex_params: bool):
  """(gradient, flatten) of the real or the complex problem."""
  if complex_params:
    return complex_gradient, as_real
  return problem.gradient, problem.flatten


# Complex params: the problem's 50 reals as 25 complex64 elements, each holding
# two consecutive reals as (re, im), the layout of torch.view_as_real.
COMPLEX_SHAPES = {"b": (4,), "w": (3, 7)}


def as_complex(flat: np.ndarray) -> Dict[str, np.ndarray]:
  """The problem's flat float32 vector as complex64 leaves (re, im pairs)."""
  out, start = {}, 0
  for name, shape in COMPLEX_SHAPES.items():
    size = 2 * int(np.prod(shape))
    pairs = np.asarray(flat[start:start + size]).reshape(shape + (2,))
    out[name] = (pairs[..., 0] + 1j * pairs[..., 1]).astype(np.complex64)
    start += size
  return out


def as_real(params) -> np.ndarray:
  """Complex leaves back to the problem's flat float32 vector."""
  return np.concatenate([
      np.stack([np.real(p), np.imag(p)], -1).ravel()
      for p in (np.asarray(params[k]) for k in COMPLEX_SHAPES)])


def complex_gradient(params, step: int, sign: float = 1.0):
  """The problem's gradient at the complex params' real coordinates."""
  flat = as_real(params)
  return as_complex(problem.flatten(
      problem.gradient({"b": flat[:8], "w": flat[8:]}, step, sign)))


def initial_complex_params() -> Dict[str, np.ndarray]:
  return as_complex(problem.flatten(problem.initial_params()))
