"""NumPy float32 re-implementation of the Nature-DQN RMSprop update.

Follows DeepMind's DQN 3.0 Lua code, ``dqn/NeuralQLearner.lua``,
``nql:qLearnMinibatch`` (read from the public mirror
kuz/DeepMind-Atari-Deep-Q-Learner). ``dw`` there is the *ascent* direction
(backward of the TD error), so here ``dw = -grad``::

  dw:add(-wc, w)
  g:mul(0.95):add(0.05, dw)
  g2:mul(0.95):add(0.05, dw²)
  tmp = sqrt(g2 - g² + 0.01)
  deltas:mul(0):addcdiv(lr, dw, tmp)
  w:add(deltas)

The 0.95 and 0.01 are hard-coded there; here they are ``decay`` and ``eps``.
"""

from __future__ import annotations

import numpy as np

f32 = np.float32


class DqnRMSprop:
  """``p = opt.step(p, grad, lr)`` on flat float32 arrays; lr of this step."""

  def __init__(self, size, decay=0.95, eps=0.01, weight_cost=0.0):
    self.decay, self.eps, self.weight_cost = decay, eps, weight_cost
    self.g = np.zeros(size, f32)
    self.g2 = np.zeros(size, f32)

  def step(self, w, grad, lr):
    dw = -grad + f32(-self.weight_cost) * w
    self.g = self.g * f32(self.decay) + f32(1 - self.decay) * dw
    self.g2 = self.g2 * f32(self.decay) + f32(1 - self.decay) * (dw * dw)
    tmp = np.sqrt(-(self.g * self.g) + self.g2 + f32(self.eps))
    deltas = (f32(lr) * dw) / tmp  # TH addcdiv: t + value * src1 / src2
    return w + deltas
