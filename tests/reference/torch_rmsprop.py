"""NumPy float32 re-implementation of ``torch.optim.RMSprop``.

Follows pytorch/pytorch ``torch/optim/rmsprop.py``,
``_single_tensor_rmsprop`` (the CPU default), op by op: ν₀ = 0, ε outside the
root, coupled L2 after the maximize flip, lr applied after the momentum
buffer. Scalars are Python doubles that torch casts to float32, as here.
"""

from __future__ import annotations

import numpy as np

f32 = np.float32


class RMSprop:
  """``p = opt.step(p, g, lr)`` on flat float32 arrays; lr of this step."""

  def __init__(self, size, alpha=0.99, eps=1e-8, weight_decay=0.0,
               momentum=0.0, centered=False, maximize=False):
    self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
    self.momentum, self.centered, self.maximize = momentum, centered, maximize
    self.square_avg = np.zeros(size, f32)
    self.grad_avg = np.zeros(size, f32) if centered else None
    self.buf = np.zeros(size, f32) if momentum > 0 else None

  def step(self, p, g, lr):
    if self.maximize:
      g = -g
    if self.weight_decay != 0:
      g = g + f32(self.weight_decay) * p  # grad.add(param, alpha=wd)
    # square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    self.square_avg = self.square_avg * f32(self.alpha) + f32(
        1 - self.alpha) * (g * g)
    if self.centered:
      # grad_avg.lerp_(grad, 1 - alpha): weight < 0.5 -> a + w (b - a)
      self.grad_avg = self.grad_avg + f32(1 - self.alpha) * (g - self.grad_avg)
      avg = np.sqrt(self.square_avg - self.grad_avg * self.grad_avg)
    else:
      avg = np.sqrt(self.square_avg)
    avg = avg + f32(self.eps)
    if self.buf is not None:
      self.buf = self.buf * f32(self.momentum) + g / avg
      return p + f32(-lr) * self.buf  # param.add_(buf, alpha=-lr)
    return p + f32(-lr) * (g / avg)  # param.addcdiv_(grad, avg, value=-lr)
