"""Low-precision state: does the update read the state as stored? A/B'd.

  python benchmarks/ablate_state_dtype.py [--sizes 1e6,16e6] [--reps 9]

With a bfloat16 ν (or momentum buffer), a step can compute its update from
the float32 value *before* rounding it for storage, or from the stored
(rounded) value. ``optax_rmsprop`` now does the latter. The former makes XLA
recompute the new state inside the parameter-update fusion from the *old*
state, which the loop-carried (or donated) state buffer is overwritten in
place, so XLA inserts a copy of the state every step. This times, interleaved
in one process (median of per-repeat ratios), ours against local copies of
the previous formulation, and counts the copies in the compiled loop body.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_rmsprop

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from run import JaxCase, measure, paired_ratio  # noqa: E402

LR, DECAY, EPS, BETA = 1e-3, 0.9, 1e-8, 0.9
BF16 = jnp.bfloat16
BF16_MAX = float(jnp.finfo(BF16).max)


def to_bf16(x):
  """A saturating cast to bfloat16 (as the core stores state)."""
  return jnp.clip(x, -BF16_MAX, BF16_MAX).astype(BF16)


def rms_from_unrounded_nu():
  """Plain RMSprop, bf16 ν, update from the unrounded ν (the old core)."""

  def init(p):
    return jnp.zeros(p.shape, BF16)

  def update(g, nu, p=None):
    new_nu = (1 - DECAY) * g**2 + DECAY * nu.astype(jnp.float32)
    new_nu = jnp.where(new_nu > 3.4e38, 3.4e38, new_nu)
    u = jax.lax.rsqrt(jnp.maximum(new_nu + EPS, 1.18e-38)) * g
    return -LR * u, to_bf16(new_nu)

  return optax.GradientTransformation(init, update)


def momentum_from_unrounded_buffer():
  """optax.trace with a bf16 buffer, updates from the unrounded sum (old)."""
  trace = optax.trace(BETA)

  def init(p):
    return optax.TraceState(trace=jnp.zeros(p.shape, BF16))

  def update(u, state, p=None):
    new_u, new_state = trace.update(u, state)
    return new_u.astype(u.dtype), optax.TraceState(
        to_bf16(new_state.trace))

  return optax.GradientTransformation(init, update)


def loop_copies(case) -> int:
  """Copies of arrays inside the compiled K-step loop's body."""
  text = case.loop.as_text()
  bodies = [c for c in text.split("\n\n") if "get-tuple-element" in c
            and "while(" not in c and "fusion(" in c]
  return sum(len(re.findall(r"= \S+\[\d[^\]]*\]\{[^}]*\} copy\(", b)) for b in bodies)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--sizes", default="1e6,16e6")
  ap.add_argument("--reps", type=int, default=9)
  ap.add_argument("--target-s", type=float, default=0.15)
  args = ap.parse_args()
  rms = optax_rmsprop.rmsprop
  txs = {
      "ν f32 (ours)": rms(LR, DECAY, EPS),
      "ν bf16, as stored (ours)": rms(LR, DECAY, EPS, nu_dtype=BF16),
      "ν bf16, unrounded (old)": rms_from_unrounded_nu(),
      "momentum f32 (ours)": rms(LR, DECAY, EPS, momentum=BETA),
      "momentum bf16, as stored (ours)": rms(
          LR, DECAY, EPS, momentum=BETA, momentum_dtype=BF16),
      "momentum bf16, unrounded (old)": optax.chain(
          optax.scale_by_rms(DECAY, EPS), optax.scale_by_learning_rate(LR),
          momentum_from_unrounded_buffer()),
  }
  base = {k: ("momentum f32 (ours)" if k.startswith("momentum") else "ν f32 (ours)")
          for k in txs}
  for n in [int(float(x)) for x in args.sizes.split(",")]:
    p = jnp.full((n,), 0.5)
    g = jnp.asarray(np.random.default_rng(0).normal(size=n), jnp.float32)
    cases = {k: JaxCase(tx, p, g) for k, tx in txs.items()}
    res = measure(cases, args.reps, args.target_s, host=False)
    print(f"\n{n / 1e6:.1f}M params (f32, one tensor), {args.reps} repeats")
    print(f"{'variant':34s} {'µs/step':>9s} {'vs f32 state':>13s} {'copies in loop':>15s}"
          "  state bytes")
    for k in txs:
      ratio = paired_ratio(res, k, base[k])
      print(f"{k:34s} {res[k]['device_s'] * 1e6:9.0f} {ratio:13.3f} "
            f"{loop_copies(cases[k]):15d}  {cases[k].state_bytes / 1e6:.1f} MB")


if __name__ == "__main__":
  main()
