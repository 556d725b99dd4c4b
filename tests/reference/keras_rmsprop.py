"""NumPy float32 re-implementation of Keras 3 ``keras.optimizers.RMSprop``.

Follows keras-team/keras ``keras/src/optimizers/rmsprop.py`` (``update_step``)
and ``keras/src/optimizers/base_optimizer.py`` (``_apply_weight_decay``, run
before the step with the same lr): ν₀ = 0, ε inside the root, lr inside the
momentum buffer, decoupled decay ``p - p·λ·η`` outside it.
"""

from __future__ import annotations

import numpy as np

f32 = np.float32


class RMSprop:
  """``p = opt.step(p, g, lr)`` on flat float32 arrays; lr of this step."""

  def __init__(self, size, rho=0.9, momentum=0.0, epsilon=1e-7,
               centered=False, weight_decay=None):
    self.rho, self.momentum, self.epsilon = rho, momentum, epsilon
    self.centered, self.weight_decay = centered, weight_decay
    self.velocity = np.zeros(size, f32)
    self.average_grad = np.zeros(size, f32) if centered else None
    self.buf = np.zeros(size, f32) if momentum > 0 else None

  def step(self, p, g, lr):
    lr = f32(lr)
    if self.weight_decay is not None:
      p = p - p * f32(self.weight_decay) * lr
    rho = f32(self.rho)
    self.velocity = rho * self.velocity + f32(1 - self.rho) * (g * g)
    if self.centered:
      self.average_grad = rho * self.average_grad + f32(1 - self.rho) * g
      denominator = (
          self.velocity - self.average_grad * self.average_grad
      ) + f32(self.epsilon)
    else:
      denominator = self.velocity + f32(self.epsilon)
    increment = (lr * g) / np.sqrt(denominator)
    if self.buf is not None:
      self.buf = f32(self.momentum) * self.buf + increment
      return p - self.buf
    return p - increment
