"""NumPy float32 re-implementation of timm's ``RMSpropTF``.

Follows huggingface/pytorch-image-models ``timm/optim/rmsprop_tf.py``
(``RMSpropTF.step``), op by op: square_avg starts at ones, TF's increment-form
EMA with ``1 - alpha`` a Python double, ε inside the root, weight decay either
coupled (``grad + λ p``) or decoupled (``p · (1 - lr·λ)`` before the step),
and lr inside (default) or outside the momentum buffer.
"""

from __future__ import annotations

import numpy as np

f32 = np.float32


class RMSpropTF:
  """``p = opt.step(p, g, lr)`` on flat float32 arrays; lr of this step."""

  def __init__(self, size, alpha=0.9, eps=1e-10, weight_decay=0.0,
               momentum=0.0, centered=False, decoupled_decay=False,
               lr_in_momentum=True):
    self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
    self.momentum, self.centered = momentum, centered
    self.decoupled_decay, self.lr_in_momentum = decoupled_decay, lr_in_momentum
    self.square_avg = np.ones(size, f32)
    self.grad_avg = np.zeros(size, f32) if centered else None
    self.buf = np.zeros(size, f32) if momentum > 0 else None

  def step(self, p, g, lr):
    one_minus_alpha = f32(1.0 - self.alpha)
    if self.weight_decay != 0:
      if self.decoupled_decay:
        p = p * f32(1.0 - lr * self.weight_decay)
      else:
        g = g + f32(self.weight_decay) * p
    self.square_avg = self.square_avg + one_minus_alpha * (
        g * g - self.square_avg)
    if self.centered:
      self.grad_avg = self.grad_avg + one_minus_alpha * (g - self.grad_avg)
      avg = np.sqrt(
          (self.square_avg - self.grad_avg * self.grad_avg) + f32(self.eps))
    else:
      avg = np.sqrt(self.square_avg + f32(self.eps))
    if self.buf is None:
      return p + f32(-lr) * (g / avg)
    self.buf = self.buf * f32(self.momentum)
    if self.lr_in_momentum:
      self.buf = self.buf + f32(lr) * (g / avg)
      return p - self.buf
    self.buf = self.buf + g / avg
    return p + f32(-lr) * self.buf
