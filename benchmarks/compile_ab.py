"""Compile time of one jitted step, ours vs optax, interleaved and repeated.

  python benchmarks/compile_ab.py [--leaves 1000] [--reps 4]

``run.py``'s leaf-count sweep compiles each implementation once (ours
first), which on a shared 2-core machine moves single points by 2-3x. This
alternates optax and ours, repeats, and reports medians of lower (tracing)
and compile time and the median of the per-repeat ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import optax_rmsprop

CONFIGS = {"plain": {}, "centered+momentum": dict(centered=True, momentum=0.9)}


def lower_and_compile(tx, params) -> tuple[float, float]:
  state = tx.init(params)

  def step(p, s, g):  # a new function each time: no tracing cache hit
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  t0 = time.perf_counter()
  lowered = jax.jit(step).lower(params, state, params)
  t1 = time.perf_counter()
  lowered.compile()
  return t1 - t0, time.perf_counter() - t1


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--leaves", type=int, default=1000)
  ap.add_argument("--reps", type=int, default=4)
  args = ap.parse_args()
  params = {f"w{i}": jnp.full((64, 64), 0.5, jnp.float32)
            for i in range(args.leaves)}
  impls = {"optax": optax.rmsprop, "ours": optax_rmsprop.rmsprop}
  times = {}
  for _ in range(args.reps):
    for config, kw in CONFIGS.items():
      for name, make in impls.items():
        times.setdefault((config, name), []).append(
            lower_and_compile(make(1e-3, **kw), params))
  med = statistics.median
  print(f"{args.leaves} leaves of 64x64, {args.reps} repeats (seconds)")
  for config in CONFIGS:
    for name in impls:
      t = times[(config, name)]
      print(f"  {config:18s} {name:6s} lower {med(a for a, _ in t):.2f}"
            f"  compile {med(b for _, b in t):.2f}"
            f"  total {med(a + b for a, b in t):.2f}")
    ratio = med((a + b) / (c + d) for (a, b), (c, d) in
                zip(times[(config, "ours")], times[(config, "optax")]))
    print(f"  {config:18s} ours / optax (total, median of per-repeat ratios):"
          f" {ratio:.2f}")


if __name__ == "__main__":
  main()
