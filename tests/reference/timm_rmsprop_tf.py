"""NumPy float32 re-implementation of timm's ``RMSpropTF``.

Transcribed from timm 1.0.31 (the PyPI wheel), ``timm/optim/rmsprop_tf.py``,
``_single_tensor_rmsprop_tf`` (the path timm takes on CPU), op by op; its
arithmetic is that of ``RMSpropTF.step`` at huggingface/pytorch-image-models
tag v1.0.28 (commit 8ef73809f622e0031bd7f4940265734aef8b9978), where it
still lived in ``step``. square_avg starts at ones, TF's increment-form EMA
with ``1 - alpha`` a Python double, ε inside the root, weight decay either
coupled (``grad + λ p``) or decoupled (``p · (1 - wd_scale·λ)`` before the
step, ``wd_scale = lr`` or, with ``corrected_weight_decay``, ``lr² / max_lr``
with max_lr the constructor's lr), lr inside (default) or outside the
momentum buffer, and caution (``_apply_caution``: the buffer masked where
``buf * grad <= 0``, divided by the mask's mean clamped at 1e-3; the buffer
itself stays unmasked) on the momentum path only.
"""

from __future__ import annotations

import numpy as np

f32 = np.float32


def apply_caution(m, g):
  """timm's ``_apply_caution(_m, _g)`` on one parameter tensor."""
  mask = (m * g > 0).astype(g.dtype)
  mask = mask / np.maximum(mask.mean(dtype=g.dtype), g.dtype.type(1e-3))
  return m * mask


class RMSpropTF:
  """``p = opt.step(p, g, lr)`` on float32 arrays; lr of this step.

  ``split``: sizes of the parameter tensors the flat arrays hold (caution's
  mean is per tensor); None for one tensor.
  """

  def __init__(self, size, alpha=0.9, eps=1e-10, weight_decay=0.0,
               momentum=0.0, centered=False, decoupled_decay=False,
               corrected_weight_decay=False, lr_in_momentum=True,
               caution=False, max_lr=None, split=None):
    self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
    self.momentum, self.centered = momentum, centered
    self.decoupled_decay, self.lr_in_momentum = decoupled_decay, lr_in_momentum
    self.caution = caution
    self.max_lr = max_lr if corrected_weight_decay else None
    self.split = np.cumsum(split)[:-1] if split else []
    self.square_avg = np.ones(size, f32)
    self.grad_avg = np.zeros(size, f32) if centered else None
    self.buf = np.zeros(size, f32) if momentum > 0 else None

  def _caution(self, buf, g):
    parts = zip(np.split(buf, self.split), np.split(g, self.split))
    return np.concatenate([apply_caution(b, gg) for b, gg in parts])

  def step(self, p, g, lr):
    one_minus_alpha = f32(1.0 - self.alpha)
    if self.weight_decay != 0:
      if self.decoupled_decay:
        wd_scale = lr if self.max_lr is None else lr**2 / self.max_lr
        p = p * f32(1.0 - wd_scale * self.weight_decay)
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
      buf = self._caution(self.buf, g) if self.caution else self.buf
      return p - buf
    self.buf = self.buf + g / avg
    buf = self._caution(self.buf, g) if self.caution else self.buf
    return p + f32(-lr) * buf


# ``RMSpropTF.__init__``'s arguments after ``params``, with their defaults,
# as in timm 1.0.31.
ARGUMENTS = (
    ("lr", 1e-2), ("alpha", 0.9), ("eps", 1e-10), ("weight_decay", 0),
    ("momentum", 0.0), ("centered", False), ("decoupled_decay", False),
    ("corrected_weight_decay", False), ("lr_in_momentum", True),
    ("caution", False), ("foreach", None),
)
