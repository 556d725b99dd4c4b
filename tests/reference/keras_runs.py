"""Real Keras 3 RMSprop (JAX backend) and a ``keras_rmsprop`` on the problem.

Both sides step through the shared problem (tests/reference/problem.py) one
call at a time, each with the gradient at its *own* current params (times
``grad_scale``, the loss-scale factor a Keras user multiplies the loss by),
and can stop and continue: a resume test trains one side, converts, and
continues the other from the same step index. Keras runs
``optimizer.stateless_apply`` under ``jax.jit``. Both default to float32;
``dtype=np.float64`` runs the params (and the problem's float32 gradients,
exact in float64) in float64, under ``jax_enable_x64`` with Keras' floatx
float64 (its learning-rate variable has the floatx dtype).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax

from reference import problem
from reference import schedules

NAMES = list(problem.SHAPES)  # Keras variable names, params dict keys
LR = 0.01


def keras_schedule(kind, lr=LR):
  """The Keras LearningRateSchedule equal to ``schedules.optax_schedule``."""
  if kind == "constant":
    return lr
  if kind == "drop":
    # Keras keeps values[0] while step <= boundary: one step later than optax.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [schedules.DROP_AT - 1], [lr, lr * schedules.DROP_FACTOR])
  if kind == "exponential":
    return keras.optimizers.schedules.ExponentialDecay(lr, 1, schedules.GAMMA)
  if kind == "warmup_cosine":
    return keras.optimizers.schedules.CosineDecay(
        schedules.START_FRACTION * lr, schedules.TOTAL - schedules.WARMUP,
        alpha=schedules.END_FRACTION, warmup_target=lr,
        warmup_steps=schedules.WARMUP)
  raise ValueError(kind)


def _gradient(host, t, grad_scale, dtype=np.float32):
  grads = problem.gradient(host, t)
  if grad_scale != 1.0:
    grads = {k: (g * np.float32(grad_scale)).astype(np.float32)
             for k, g in grads.items()}
  return {k: g.astype(dtype) for k, g in grads.items()}


class KerasRun:
  """A built ``keras.optimizers.RMSprop`` on named variables ``b``, ``w``.

  ``exclude`` is passed to ``optimizer.exclude_from_weight_decay(var_names=
  ...)``. ``step`` is the index of the next call (the gradient's noise).
  """

  def __init__(self, kwargs, schedule="constant", lr: Optional[float] = LR,
               exclude=None, dtype=np.float32):
    self.dtype = np.dtype(dtype)
    self.variables = [
        keras.Variable(problem.initial_params()[k].astype(dtype), name=k,
                       dtype=self.dtype.name) for k in NAMES]
    if lr is not None:
      kwargs = dict(kwargs, learning_rate=keras_schedule(schedule, lr))
    self.optimizer = keras.optimizers.RMSprop(**kwargs)
    if exclude is not None:
      self.optimizer.exclude_from_weight_decay(var_names=exclude)
    self.optimizer.build(self.variables)
    self.opt_values = [v.value for v in self.optimizer.variables]
    self.host = {k: v.astype(dtype)
                 for k, v in problem.initial_params().items()}
    self.step = 0
    self._apply = jax.jit(self.optimizer.stateless_apply)
    self._ema = [i for i, v in enumerate(self.optimizer.variables)
                 if v.name.endswith("_average")]

  def ema(self) -> Optional[np.ndarray]:
    if not self._ema:
      return None
    return np.concatenate(
        [np.asarray(self.opt_values[i]).ravel() for i in self._ema])

  def run(self, steps: int, grad_scale: float = 1.0):
    """(steps + 1, n) flat params, and the EMA's (or None) after each call."""
    values = [jnp.asarray(self.host[k]) for k in NAMES]
    params, emas = [problem.flatten(self.host)], [self.ema()]
    for _ in range(steps):
      grads = _gradient(self.host, self.step, grad_scale, self.dtype)
      values, self.opt_values = self._apply(
          self.opt_values, [grads[k] for k in NAMES], values)
      self.host = dict(zip(NAMES, jax.device_get(values)))
      self.step += 1
      params.append(problem.flatten(self.host))
      emas.append(self.ema())
    return np.stack(params), (None if emas[0] is None else np.stack(emas))

  def store(self):
    """Writes the run's values into the Keras variables (a checkpoint)."""
    for v, value in zip(self.optimizer.variables, self.opt_values):
      v.assign(value)
    for v, k in zip(self.variables, NAMES):
      v.assign(self.host[k])

  def load(self, params, opt_values, step):
    """Continues from ``params`` (dict), these optimizer values, this step."""
    self.host = {k: np.asarray(params[k], self.dtype) for k in NAMES}
    self.opt_values = [jnp.asarray(v) for v in opt_values]
    self.step = step


class OptaxRun:
  """``tx`` on the problem, one jitted ``update`` + ``apply_updates`` a call."""

  def __init__(self, tx: optax.GradientTransformation, params=None,
               state=None, step: int = 0, dtype=np.float32):
    self.tx = tx
    self.dtype = np.dtype(dtype)
    host = problem.initial_params() if params is None else params
    self.host = {k: np.asarray(host[k], self.dtype) for k in NAMES}
    self.params = jax.tree.map(jnp.asarray, self.host)
    self.state = tx.init(self.params) if state is None else state
    self.step = step

    @jax.jit
    def apply(params, state, grads):
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    self._apply = apply

  def load(self, params, state, step):
    """Continues from ``params`` (dict), this optax state, this step."""
    self.host = {k: np.asarray(params[k], self.dtype) for k in NAMES}
    self.params = jax.tree.map(jnp.asarray, self.host)
    self.state = state
    self.step = step

  def ema(self) -> Optional[np.ndarray]:
    found = optax.tree_utils.tree_get_all_with_path(self.state, "ema_params")
    if not found:
      return None
    return problem.flatten(jax.device_get(found[0][1]))

  def run(self, steps: int, grad_scale: float = 1.0):
    params, emas = [problem.flatten(self.host)], [self.ema()]
    for _ in range(steps):
      grads = _gradient(self.host, self.step, grad_scale, self.dtype)
      self.params, self.state = self._apply(self.params, self.state, grads)
      self.host = jax.device_get(self.params)
      self.step += 1
      params.append(problem.flatten(self.host))
      emas.append(self.ema())
    return np.stack(params), (None if emas[0] is None else np.stack(emas))
