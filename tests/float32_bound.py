"""A running forward-error bound for `rmsprop` computed in float32.

For a float32 run compared with the float64 reference (same float32 inputs:
params, gradients and hyperparameters), every float32 operation rounds its
exact result by at most ``U`` relative (``TINY`` absolute near underflow),
and the bound follows how each operation propagates the errors it receives
(first order, plus the second-order terms that matter). It mirrors the
update, operation by operation, as the chain computes it:

* ``(1 - ρ) g² + ρ ν`` and ``(1 - ρ) g + ρ μ`` (optax's moment updates),
* ``ν / (1 - ρ^t)`` (``ρ^t`` from ``pow``, the division maybe a multiply),
* ``max(ν̂ - μ̂², 0)``, then ``rsqrt(v + ε)`` or ``1 / (√v + ε)``,
* ``-η r``, the momentum buffer, decoupled decay, ``p + u``.

Conditioning is what the bound is about: a square root near 0 (``√`` is not
Lipschitz there), or the cancellation in ``ν̂ - μ̂²`` when the gradient is
constant (centered, and step 1 of centered + bias_correction with ν₀ = 0,
where ν̂ - μ̂² is 0 exactly and float32 leaves a few ulps of g²), make the
bound large, but never larger than what a clamped denominator allows: the
chain's ``v`` is ``>= 0`` and its denominator ``>= ε``, so ``|r| <= |g|/√ε``
(``|g|/ε`` with ε outside the root). That is "relative to the scale of the
update": an ill-conditioned step is held to ``|g| / √ε``, a well-conditioned
one to a few hundred ulps.
"""

from __future__ import annotations

import numpy as np

U = 2.0**-24  # float32 unit roundoff (round to nearest)
TINY = 2.0**-126  # smallest normal float32: absolute error near underflow
# For the second-order terms left out and the bound's own float64 rounding:
# an ill-conditioned step can hit its bound exactly (the clamped v = 0 gives
# the largest scaling 1/√ε), and later steps then sit on the bound too.
SLACK = 1 + 2.0**-20


def _round(x):
  """Bound on the rounding of a float32 result of exact value ``x``."""
  return U * np.abs(x) + TINY


class Float32Bound:
  """Absolute error bounds of the float32 state, stepped with the reference.

  ``step`` takes the float64 reference's values before and after its step
  (params and state) and returns the bound on ``|p_float32 - p_float64|``;
  after it, ``update``, ``nu``, ``mu`` and ``m`` bound the update's and the
  state's deviations. Start it from the float32 state (zero errors) to bound
  a single step.
  """

  def __init__(self, config, shape):
    self.c = config
    self.p = np.zeros(shape)  # params, ν, μ and the momentum buffer
    self.nu = np.zeros(shape)
    self.mu = np.zeros(shape)
    self.m = np.zeros(shape)

  def step(self, t, g, p, nu, mu, m, p_new, nu_new, mu_new, m_new, eta):
    """Bounds after update ``t`` (from 1); ``p, nu, mu, m``: before it."""
    c = self.c
    rho = np.asarray(c.decay, np.float64)
    # g̃ = ±g + λ_c p
    if c.maximize:
      g = -g
    e_g = np.zeros_like(g)
    if c.coupled_weight_decay is not None:
      lam = c.coupled_weight_decay
      g = g + lam * p
      e_g = lam * self.p + _round(lam * p) + _round(g)
    # ν' = (1-ρ) g̃² + ρ ν: g̃² (its error 2|g̃|e + e²), two products, a sum;
    # 1 - ρ rounds only for ρ < 0.5 (Sterbenz).
    sq = 2 * np.abs(g) * e_g + e_g**2
    e_nu = (
        rho * self.nu + (1 - rho) * sq + 5 * _round(nu_new) + 2 * TINY
    )
    e_mu = (
        rho * self.mu
        + (1 - rho) * e_g
        + 3 * _round((1 - rho) * np.abs(g) + rho * np.abs(mu))
        + _round(mu_new)
    )
    nu_hat, mu_hat, e_nu_hat, e_mu_hat = nu_new, mu_new, e_nu, e_mu
    if c.bias_correction:
      # XLA:CPU's float32 pow is within 1 ulp of ρ^t (measured over 400,000
      # draws of ρ in [0, 0.999], t <= 24); 4 allowed. 1 - ρ^t then
      # amplifies it by ρ^t / (1 - ρ^t): ~1000 for ρ = 0.999 at t = 1.
      power = rho**t
      e_power = 4 * U * power + TINY
      corr = 1 - power
      e_corr = e_power + _round(corr)
      # ν / c or ν · (1/c): two roundings; c's own error, relative e_c/c.
      rel = e_corr / (corr * (corr - e_corr))
      nu_hat, mu_hat = nu_new / corr, mu_new / corr
      e_nu_hat = e_nu / corr + nu_new * rel + 2 * _round(nu_hat)
      e_mu_hat = e_mu / corr + np.abs(mu_new) * rel + 2 * _round(mu_hat)
    if c.centered:
      w = nu_hat - mu_hat**2
      e_v = (
          e_nu_hat
          + 2 * np.abs(mu_hat) * e_mu_hat
          + e_mu_hat**2
          + _round(mu_hat**2)
          + _round(w)
      )
      v = np.maximum(w, 0.0)  # max(·, 0) is 1-Lipschitz
    else:
      v, e_v = nu_hat, e_nu_hat
    eps = np.asarray(c.eps, np.float64)
    # The chain's v is >= 0 and its denominator >= max(ε, TINY) (clamp and
    # floor): the computed scaling 1/denominator is at most 1/low; at least
    # that of the denominator's upper bound.
    if c.eps_in_sqrt:
      x = v + eps
      e_x = e_v + _round(x)
      low = np.maximum(np.maximum(x - e_x, eps), TINY)
      s = 1 / np.sqrt(x)
      e_s = np.maximum(1 / np.sqrt(low) - s, s - 1 / np.sqrt(x + e_x))
      e_s = e_s + 2 * U / np.sqrt(low)  # rsqrt: 2 roundings
    else:
      root = np.sqrt(v)
      e_root = np.maximum(
          root - np.sqrt(np.maximum(v - e_v, 0.0)), np.sqrt(v + e_v) - root
      ) + _round(np.sqrt(v + e_v))
      d = root + eps
      e_d = e_root + _round(d + e_root)
      low = np.maximum(np.maximum(d - e_d, eps), TINY)
      s = 1 / d
      e_s = np.maximum(1 / low - s, s - 1 / (d + e_d)) + 2 * U / low
    r = g * s
    e_r = np.abs(g) * e_s + (s + e_s) * e_g
    e_r = e_r + _round(np.abs(r) + e_r)
    # The learning rate and momentum.
    e_a = eta * e_r + _round(eta * (np.abs(r) + e_r))
    if c.momentum is None:
      e_u = e_a
    elif c.lr_in_momentum:
      beta = c.momentum
      e_m = e_a + beta * self.m + _round(beta * np.abs(m)) + _round(m_new)
      if c.nesterov:
        out = beta * m_new - eta * r
        e_u = e_a + beta * e_m + _round(beta * np.abs(m_new)) + _round(out)
      else:
        e_u = e_m
      self.m = e_m
    else:
      beta = c.momentum
      e_m = e_r + beta * self.m + _round(beta * np.abs(m)) + _round(m_new)
      pre, e_pre = m_new, e_m
      if c.nesterov:
        pre = beta * m_new + r
        e_pre = e_r + beta * e_m + _round(beta * np.abs(m_new)) + _round(pre)
      e_u = eta * e_pre + _round(eta * (np.abs(pre) + e_pre))
      self.m = e_m
    if c.decoupled_weight_decay is not None:
      lam = c.decoupled_weight_decay
      e_u = (
          e_u
          + eta * lam * self.p
          + 2 * _round(eta * lam * np.abs(p))
          + _round(p_new - p)
      )
    self.update = e_u * SLACK
    self.p = self.p + e_u + _round(p_new)
    self.nu, self.mu = e_nu, e_mu
    return self.p * SLACK

