"""What do ours' extra clamps cost? Variants of the plain f32 step, A/B'd.

  python benchmarks/ablate_clamps.py [--sizes 1e6,16e6] [--reps 9]

Plain RMSprop in f32 differs from optax's only by two elementwise ops in
``_scale_by_rms.py`` (the saturating casts are no-ops for f32 -> f32):
``_finite``: ν ← min(ν, f32max), and the denominator floor:
rsqrt(max(ν + ε, tiny)). This re-implements the step with each switched off
(same ops otherwise, same order as the core), checks the variants' bits
against ``optax_rmsprop.rmsprop`` and ``optax.rmsprop``, counts the fusions
XLA makes, and times them interleaved in one process (median of per-repeat
ratios to optax).
"""

from __future__ import annotations

import argparse
import re
import sys
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_rmsprop

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from run import CopyCase, JaxCase, measure, paired_ratio  # noqa: E402

LR, DECAY, EPS = 1e-3, 0.9, 1e-8


def variant(clamp_nu: bool, floor_denominator: bool):
  """ours' plain-f32 leaf math with the two clamps switchable."""

  def init(p):
    return jnp.zeros_like(p)

  def update(g, nu, p=None):
    new_nu = (1 - DECAY) * g**2 + DECAY * nu
    if clamp_nu:
      new_nu = jnp.minimum(new_nu, jnp.finfo(new_nu.dtype).max)
    d = new_nu + EPS
    if floor_denominator:
      d = jnp.maximum(d, float(jnp.finfo(jnp.float32).tiny))
    u = jax.lax.rsqrt(d) * g
    return -LR * u, new_nu

  return optax.GradientTransformation(init, update)


def variant_bf16_nu(clamp):
  """ours' plain step with bf16 ν as of the first run (update from the
  unrounded ν, see ablate_state_dtype.py): f32 math, ν clamped, cast to bf16.

  ``clamp(x, big)`` is how both the ν clamp and the narrowing cast's
  saturation are written: ``jnp.minimum``/``jnp.clip`` as in the core, or a
  ``jnp.where`` select.
  """
  f32max = float(jnp.finfo(jnp.float32).max)
  bf16max = float(jnp.finfo(jnp.bfloat16).max)

  def init(p):
    return jnp.zeros(p.shape, jnp.bfloat16)

  def update(g, nu, p=None):
    new_nu = (1 - DECAY) * g**2 + DECAY * nu.astype(jnp.float32)
    new_nu = clamp(new_nu, f32max)
    d = jnp.maximum(new_nu + EPS, float(jnp.finfo(jnp.float32).tiny))
    u = jax.lax.rsqrt(d) * g
    return -LR * u, clamp(new_nu, bf16max).astype(jnp.bfloat16)

  return optax.GradientTransformation(init, update)


def core_clamp(x, big):  # ν >= 0, so clip's lower bound never binds
  return jnp.clip(x, -big, big) if big < 1e38 else jnp.minimum(x, big)


def where_clamp(x, big):
  return jnp.where(x > big, big, x)


def n_fusions(case) -> int:
  return len(re.findall(r"= \S+ fusion\(", case.step.as_text()))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--sizes", default="1e6,16e6")
  ap.add_argument("--reps", type=int, default=9)
  ap.add_argument("--target-s", type=float, default=0.05)
  args = ap.parse_args()
  txs = {
      "optax.rmsprop": optax.rmsprop(LR, DECAY, EPS),
      "ours": optax_rmsprop.rmsprop(LR, DECAY, EPS),
      "local: both clamps (= ours)": variant(True, True),
      "local: no ν clamp": variant(False, True),
      "local: no denominator floor": variant(True, False),
      "local: no clamps (= optax)": variant(False, False),
      "ours, nu_dtype=bf16": optax_rmsprop.rmsprop(LR, DECAY, EPS,
                                                   nu_dtype=jnp.bfloat16),
      "local bf16 ν, min/clip (old ours)": variant_bf16_nu(core_clamp),
      "local bf16 ν, where": variant_bf16_nu(where_clamp),
  }
  for n in [int(float(x)) for x in args.sizes.split(",")]:
    p = jnp.full((n,), 0.5)
    g = jnp.asarray(np.random.default_rng(0).normal(size=n), jnp.float32)
    cases = {k: JaxCase(tx, p, g) for k, tx in txs.items()}
    ref = {k: c.final_params(5) for k, c in cases.items()}
    cases["copy x+1"] = CopyCase(n)
    res = measure(cases, args.reps, args.target_s, host=False)
    print(f"\n{n / 1e6:.0f}M params (f32, one tensor), {args.reps} repeats")
    print(f"{'variant':30s} {'µs/step':>9s} {'vs optax':>9s} {'fusions':>8s}"
          "  bits == optax  bits == ours (bf16 rows: ours with bf16 ν)")
    for k in txs:
      ratio = paired_ratio(res, k, "optax.rmsprop")
      bf16 = "bf16" in k
      same_optax = bool(jnp.array_equal(ref[k], ref["optax.rmsprop"]))
      same_ours = bool(jnp.array_equal(
          ref[k], ref["ours, nu_dtype=bf16" if bf16 else "ours"]))
      print(f"{k:30s} {res[k]['device_s'] * 1e6:9.0f} {ratio:9.3f} "
            f"{n_fusions(cases[k]):8d}  {same_optax!s:13s} {same_ours!s}")
    copy = res["copy x+1"]["device_s"]
    print(f"{'copy x+1 (f32 floor = 2.5x)':30s} {copy * 1e6:9.0f}")


if __name__ == "__main__":
  main()
