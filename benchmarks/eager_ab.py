"""Eager (un-jitted) update cost, ours vs optax, interleaved and repeated.

  python benchmarks/eager_ab.py [--reps 15] [--steps 20]

Three ways users run an update outside ``jax.jit``:

* ``same``: one transform, ``tx.update`` called in a loop;
* ``fresh``: the transform rebuilt before every update (code that builds the
  optimizer inside the step function, outside any jit);
* ``inject_static``: ``optax.inject_hyperparams(rmsprop, static_args=("decay",
  "eps"))``, which rebuilds the inner transform on every update.

A transform that compiled a kernel per instance would pay a compile per
update in the last two (the per-leaf ``jax.jit`` closure did: ~200 ms against
optax's ~1.5 ms). Each repeat times ``--steps`` updates of optax and of ours
back to back (order alternating); the result is the median over repeats of
the per-repeat ratio, which a shared machine's load shifts much less than
either time. Also counts compilations after warm-up (must be 0).
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import optax_rmsprop

CONFIGS = {
    "plain": {},
    "centered+momentum+bias": dict(
        centered=True, momentum=0.9, bias_correction=True
    ),
}
PARAMS = {"w": jnp.ones((64, 64)), "b": jnp.ones(64)}
GRADS = jax.tree.map(lambda p: 0.1 * p, PARAMS)


def make_runner(factory, mode: str):
  """A function running one eager update (state kept between calls)."""
  if mode == "inject_static":
    tx = optax.inject_hyperparams(factory, static_args=("decay", "eps"))(
        learning_rate=1e-2, decay=0.9, eps=1e-8
    )
  else:
    tx = factory(learning_rate=1e-2)
  state = [tx.init(PARAMS)]

  def run():
    nonlocal tx
    if mode == "fresh":
      tx = factory(learning_rate=1e-2)
    updates, state[0] = tx.update(GRADS, state[0], PARAMS)
    return updates

  return run


def time_steps(run, steps: int) -> float:
  jax.block_until_ready(run())
  t = time.perf_counter()
  for _ in range(steps):
    out = run()
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / steps


def count_compiles(run, steps: int) -> int:
  run()  # warm-up
  messages = []
  handler = logging.Handler()
  handler.emit = lambda record: messages.append(record.getMessage())
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles(True):
      for _ in range(steps):
        run()
  finally:
    logger.removeHandler(handler)
  return sum(m.startswith("Compiling") for m in messages)


def main(argv=None):
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=15)
  ap.add_argument("--steps", type=int, default=20)
  args = ap.parse_args(argv)
  print(f"jax {jax.__version__}, optax {optax.__version__}; tree: 64x64 + 64;"
        f" {args.reps} repeats of {args.steps} eager updates")
  print(f"{'config':24s} {'mode':14s} {'optax ms':>9s} {'ours ms':>8s}"
        f" {'ours/optax':>10s} {'compiles':>8s}")
  worst = 0.0
  for config, kw in CONFIGS.items():
    for mode in ("same", "fresh", "inject_static"):
      runners = {
          "optax": make_runner(functools.partial(optax.rmsprop, **kw), mode),
          "ours": make_runner(
              functools.partial(optax_rmsprop.rmsprop, **kw), mode
          ),
      }
      times = {"optax": [], "ours": []}
      ratios = []
      for rep in range(args.reps):
        order = ("optax", "ours") if rep % 2 == 0 else ("ours", "optax")
        t = {name: time_steps(runners[name], args.steps) for name in order}
        for name in t:
          times[name].append(t[name])
        ratios.append(t["ours"] / t["optax"])
      compiles = count_compiles(runners["ours"], 3)
      ratio = statistics.median(ratios)
      worst = max(worst, ratio)
      print(f"{config:24s} {mode:14s}"
            f" {statistics.median(times['optax']) * 1e3:9.2f}"
            f" {statistics.median(times['ours']) * 1e3:8.2f}"
            f" {ratio:10.2f} {compiles:8d}")
  print(f"worst median ratio {worst:.2f}")


if __name__ == "__main__":
  main()
