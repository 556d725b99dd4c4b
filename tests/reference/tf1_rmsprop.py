"""NumPy float32 re-implementation of ``tf.compat.v1.train.RMSPropOptimizer``.

Follows tensorflow ``tensorflow/python/training/rmsprop.py`` (slots: ``rms``
starts at ones, ``momentum`` and ``mg`` at zeros; hyperparameters cast to the
variable dtype) and the CPU kernels ``ApplyRMSProp`` / ``ApplyCenteredRMSProp``
in ``tensorflow/core/kernels/training_ops.cc``::

  ms  += (grad² - ms) * (1 - rho)            # 1 - rho computed in float32
  mg  += (grad - mg) * (1 - rho)             # centered only
  mom  = mom * momentum + (grad * lr) / sqrt(ms [- mg²] + epsilon)
  var -= mom
"""

from __future__ import annotations

import numpy as np

f32 = np.float32


class RMSprop:
  """``p = opt.step(p, g, lr)`` on flat float32 arrays; lr of this step."""

  def __init__(self, size, decay=0.9, momentum=0.0, epsilon=1e-10,
               centered=False):
    self.decay, self.momentum = f32(decay), f32(momentum)
    self.epsilon, self.centered = f32(epsilon), centered
    self.ms = np.ones(size, f32)
    self.mg = np.zeros(size, f32) if centered else None
    self.mom = np.zeros(size, f32)  # TF1 always creates this slot

  def step(self, p, g, lr):
    one_minus_rho = f32(1) - self.decay
    self.ms = self.ms + (g * g - self.ms) * one_minus_rho
    if self.centered:
      self.mg = self.mg + (g - self.mg) * one_minus_rho
      denom = (self.ms - self.mg * self.mg) + self.epsilon
    else:
      denom = self.ms + self.epsilon
    self.mom = self.mom * self.momentum + (g * f32(lr)) / np.sqrt(denom)
    return p - self.mom
