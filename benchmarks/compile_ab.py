"""Compile time of one jitted training step, ours vs optax, in one process.

  python benchmarks/compile_ab.py [--reps 3] [--quick]

For every tree in ``trees.py`` (GPT-2- and ResNet-like at scale 1/8, 400
leaves of 32x32, 1000 of 64x64, one tensor) and each configuration, one step
(gradient of a loss, update, ``apply_updates``) is lowered and compiled for
optax.rmsprop and for ours, alternately, ``--reps`` times. Reported: medians
of lower (tracing) and compile seconds, and the median of the per-repeat
ratio ours / optax of their sum (a ratio in one process, so the load of a
shared machine cancels as far as it can).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
import trees

import optax_rmsprop

CONFIGS = {
    "plain": {},
    "centered+momentum": dict(centered=True, momentum=0.9),
    "centered+bias+nesterov": dict(
        centered=True, bias_correction=True, momentum=0.9, nesterov=True
    ),
}
TREES = {
    "gpt2/8": lambda: trees.gpt2_small(1 / 8),
    "resnet18/8": lambda: trees.resnet18(1 / 8),
    "400x(32,32)": lambda: trees.many_leaves(400, 32),
    "1000x(64,64)": lambda: trees.many_leaves(1000, 64),
    "one 1M": lambda: trees.one_tensor(1 << 20),
}


def lower_and_compile(tx, params) -> tuple[float, float]:
  state = tx.init(params)

  def step(p, s):  # a new function each time: no tracing cache hit
    loss = lambda p: sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(p))
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  t0 = time.perf_counter()
  lowered = jax.jit(step).lower(params, state)
  t1 = time.perf_counter()
  lowered.compile()
  return t1 - t0, time.perf_counter() - t1


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=3)
  ap.add_argument("--quick", action="store_true", help="two trees, one rep")
  args = ap.parse_args()
  impls = {"optax": optax.rmsprop, "ours": optax_rmsprop.rmsprop}
  names = list(TREES)[:2] if args.quick else list(TREES)
  reps = 1 if args.quick else args.reps
  med = statistics.median
  print(f"jax {jax.__version__}, optax {optax.__version__}; {reps} repeats")
  print("| tree | config | optax lower+compile (s) | ours (s) | ours/optax |")
  print("|---|---|---|---|---|")
  worst = 0.0
  for tree_name in names:
    shapes = TREES[tree_name]()
    params = jax.tree.map(
        lambda s: jnp.full(s, 0.5, jnp.float32), shapes, is_leaf=trees.is_shape
    )
    for config, kw in CONFIGS.items():
      times = {name: [] for name in impls}
      for _ in range(reps):
        for name, make in impls.items():
          times[name].append(sum(lower_and_compile(make(1e-3, **kw), params)))
      ratio = med(a / b for a, b in zip(times["ours"], times["optax"]))
      worst = max(worst, ratio)
      print(
          f"| {tree_name} | {config} | {med(times['optax']):.2f} |"
          f" {med(times['ours']):.2f} | {ratio:.2f} |"
      )
  print(f"worst ratio {worst:.2f}")


if __name__ == "__main__":
  main()
