"""NumPy float32 re-implementation of ``tf.compat.v1.train.RMSPropOptimizer``.

Follows tensorflow ``tensorflow/python/training/rmsprop.py`` (slots: ``rms``
starts at ones, ``momentum`` and ``mg`` at zeros; hyperparameters cast to the
variable dtype) and the CPU kernels ``ApplyRMSProp`` / ``ApplyCenteredRMSProp``
in ``tensorflow/core/kernels/training_ops.cc``::

  ms  += (grad² - ms) * (1 - rho)            # 1 - rho computed in float32
  mg  += (grad - mg) * (1 - rho)             # centered only
  mom  = mom * momentum + (grad * lr) / sqrt(ms [- mg²] + epsilon)
  var -= mom

and, for a gradient that is an ``IndexedSlices`` (an embedding lookup), the
optimizer's ``_apply_sparse_duplicate_indices`` (duplicate indices summed by
``unsorted_segment_sum``, in order of first appearance) followed by the
kernels ``SparseApplyRMSProp`` / ``SparseApplyCenteredRMSProp``, which touch
only the rows indexed, in their own operation order::

  for each unique row i, with its summed gradient g:
    ms[i]  = ms[i] * rho + g² * (1 - rho)
    mg[i]  = mg[i] * rho + g * (1 - rho)                     # centered only
    mom[i] = mom[i] * momentum
             + rsqrt(ms[i] + epsilon [- mg[i]²]) * lr * g
    var[i] -= mom[i]
"""

from __future__ import annotations

import numpy as np

f32 = np.float32


class RMSprop:
  """``p = opt.step(p, g, lr)`` on flat float32 arrays; lr of this step.

  ``size`` may be a shape and ``dtype`` float16 (for :meth:`sparse_step`).
  The hyperparameters are float32 tensors cast to the variable's dtype.
  """

  def __init__(self, size, decay=0.9, momentum=0.0, epsilon=1e-10,
               centered=False, dtype=f32):
    self.decay, self.momentum = f32(decay), f32(momentum)
    self.epsilon, self.centered = f32(epsilon), centered
    self.ms = np.ones(size, dtype)
    self.mg = np.zeros(size, dtype) if centered else None
    self.mom = np.zeros(size, dtype)  # TF1 always creates this slot

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

  def sparse_step(self, p, indices, values, lr):
    """``p`` (rows, ...) after a sparse update with ``IndexedSlices(values,
    indices)``; the slots have ``p``'s shape. Rows not indexed are untouched.
    """
    dtype = p.dtype
    rho, momentum = self.decay.astype(dtype), self.momentum.astype(dtype)
    epsilon, lr = self.epsilon.astype(dtype), f32(lr).astype(dtype)
    one_minus_rho = dtype.type(1) - rho
    unique, position = _unique_in_order(indices)
    summed = np.zeros((len(unique),) + values.shape[1:], dtype)
    for k, value in zip(position, values):  # unsorted_segment_sum, in order
      summed[k] = summed[k] + value
    p = p.copy()
    for i, g in zip(unique, summed):
      self.ms[i] = self.ms[i] * rho + g * g * one_minus_rho
      denom = self.ms[i] + epsilon
      if self.centered:
        self.mg[i] = self.mg[i] * rho + g * one_minus_rho
        denom = denom - self.mg[i] * self.mg[i]
      rsqrt = dtype.type(1) / np.sqrt(denom)
      self.mom[i] = self.mom[i] * momentum + rsqrt * lr * g
      p[i] = p[i] - self.mom[i]
    return p


def _unique_in_order(indices):
  """``tf.unique``: the distinct indices in order of first appearance, and
  each index's position among them."""
  unique, position = [], []
  for index in np.asarray(indices).tolist():
    if index not in unique:
      unique.append(index)
    position.append(unique.index(index))
  return unique, position
