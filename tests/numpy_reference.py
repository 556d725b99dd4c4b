"""A NumPy re-implementation of `rmsprop`, written from the docstring equations.

Deliberately naive (one array, explicit loop state, float64 by default) so a
bug in the JAX chain cannot be mirrored here. Schedules are called with the
update count, from 0.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Union

import numpy as np


@dataclasses.dataclass
class Config:
  learning_rate: Union[float, Callable[[int], float]] = 0.01
  decay: float = 0.9
  eps: float = 1e-8
  initial_scale: float = 0.0
  eps_in_sqrt: bool = True
  centered: bool = False
  momentum: Optional[float] = None
  nesterov: bool = False
  bias_correction: bool = False
  lr_in_momentum: bool = True
  decoupled_weight_decay: Optional[float] = None
  coupled_weight_decay: Optional[float] = None
  maximize: bool = False

  def kwargs(self) -> dict:
    return dataclasses.asdict(self)


class NumpyRMSprop:
  """Stateful reference: ``p = opt.step(p, g)``."""

  def __init__(self, config: Config, params: np.ndarray, dtype=np.float64):
    self.c = config
    self.dtype = dtype
    self.nu = np.full(params.shape, config.initial_scale, dtype)
    self.mu = np.zeros(params.shape, dtype)
    self.m = np.zeros(params.shape, dtype)
    self.t = 0  # updates applied so far

  def lr(self) -> float:
    lr = self.c.learning_rate
    return lr(self.t) if callable(lr) else lr

  def step(self, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    c, t = self.c, self.t + 1
    p = p.astype(self.dtype)
    g = g.astype(self.dtype)
    eta = self.lr()
    if c.maximize:
      g = -g
    if c.coupled_weight_decay is not None:
      g = g + c.coupled_weight_decay * p
    self.nu = c.decay * self.nu + (1 - c.decay) * g * g
    self.mu = c.decay * self.mu + (1 - c.decay) * g
    correction = (1 - c.decay**t) if c.bias_correction else 1.0
    nu_hat, mu_hat = self.nu / correction, self.mu / correction
    v = np.maximum(nu_hat - mu_hat**2, 0.0) if c.centered else nu_hat
    denom = np.sqrt(v + c.eps) if c.eps_in_sqrt else np.sqrt(v) + c.eps
    r = g / denom
    if c.momentum is None:
      u = -eta * r
    elif c.lr_in_momentum:
      self.m = c.momentum * self.m - eta * r
      u = (c.momentum * self.m - eta * r) if c.nesterov else self.m
    else:
      self.m = c.momentum * self.m + r
      u = -eta * ((c.momentum * self.m + r) if c.nesterov else self.m)
    if c.decoupled_weight_decay is not None:
      u = u - eta * c.decoupled_weight_decay * p
    self.t = t
    return p + u
