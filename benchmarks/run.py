"""Benchmarks optax_rmsprop against optax and PyTorch, and against the floor.

  python benchmarks/run.py            # full run (~13 min on 2 idle cores)
  python benchmarks/run.py --quick    # smoke run (~40 s)

An RMSprop step is memory-bound, so the floor is bytes moved / bandwidth,
with the bandwidth MEASURED here by a jitted ``x + 1`` over the same number
of elements. All implementations of one (tree, config) cell are timed in this
process, interleaved, repeated; the tables report medians and ratios, which
are meaningful on a shared machine where absolute times drift.

Per cell and implementation:
* device time per step: the slope between a jitted ``lax.fori_loop`` of K
  steps and of 1 step (same executable, trip count is an argument), carrying
  params and optimizer state (in place, as with donated buffers), and the
  gradients behind an optimization barrier so they are read every step; the
  call's dispatch and output allocation cancel out.
* host time: one call of a jitted ``update + apply_updates``, timed from
  Python with ``block_until_ready`` (what a training loop pays per step,
  without buffer donation).
* compile time: ``jax.jit(step).lower(...).compile()`` of that one step.
* state bytes: the optimizer state's array bytes.
PyTorch ``RMSprop(foreach=True)`` is timed per ``opt.step()`` in a loop, with
as many threads as cores.

Writes benchmarks/results/<machine>.{json,md} and <machine>-*.png.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import platform
import re
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_rmsprop

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import trees  # noqa: E402

LR = 1e-3
COPY = "copy x+1"
SGD_BOUND = "bound: p − η·g"
EXACT_STEPS = 10  # steps before comparing params across implementations
CONFIGS = {
    "plain": dict(),
    "centered+momentum": dict(centered=True, momentum=0.9),
    "nu_bf16": dict(nu_dtype=jnp.bfloat16),
}
# Bytes one step must move per parameter (f32 params and gradients): read
# p, g, each state array; write p and each state array.
STATE_BYTES_PER_PARAM = {"plain": 4, "centered+momentum": 12, "nu_bf16": 2}


def bytes_per_param(config: str) -> int:
  return 4 * 3 + 2 * STATE_BYTES_PER_PARAM[config]


# ---------------------------------------------------------------- machine


def machine_info() -> dict:
  dev = jax.devices()[0]
  cpu = platform.processor() or "unknown CPU"
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
    m = re.search(r"model name\s*:\s*(.+)", text)
    cpu = m.group(1).strip() if m else cpu
  except OSError:
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  versions = {"python": platform.python_version(), "jax": jax.__version__,
              "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
              "optax": optax.__version__, "optax_rmsprop": optax_rmsprop.__version__,
              "numpy": np.__version__}
  try:
    import torch

    versions["torch"] = torch.__version__
  except ImportError:
    pass
  backend = jax.default_backend()
  if backend == "cpu":
    name = f"cpu-{cpu}-{cores}c"
    label = f"CPU: {cpu}, {cores} cores"
  else:
    name = f"{backend}-{dev.device_kind}"
    label = f"{backend.upper()}: {dev.device_kind} (host CPU {cpu}, {cores} cores)"
  name = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
  return {"name": name, "label": label, "backend": backend,
          "device_kind": dev.device_kind, "cpu": cpu, "cores": cores,
          "versions": versions}


# ---------------------------------------------------------------- builders


def make_tree(shapes, value, dtype=jnp.float32):
  return jax.tree.map(lambda s: jnp.full(s, value, dtype), shapes,
                      is_leaf=trees.is_shape)


def transforms(config: str, many: bool) -> dict:
  kw = CONFIGS[config]
  out = {"ours": optax_rmsprop.rmsprop(LR, **kw)}
  if config != "nu_bf16":  # optax has no nu_dtype
    out["optax"] = optax.rmsprop(LR, **kw)
    if not many or config == "plain":  # flatten compiles slowly on many leaves
      out["optax.flatten"] = optax.flatten(optax.rmsprop(LR, **kw))
  out["ours+stack_leaves"] = optax_rmsprop.tools.stack_leaves(
      optax_rmsprop.rmsprop(LR, **kw))
  if config == "plain":
    # Stateless p − η·g on the same tree: a lower bound on what any optimizer
    # whose params stay per-leaf buffers pays per call (kernels, buffers).
    out[SGD_BOUND] = optax.sgd(LR)
  return out


def state_bytes(state) -> int:
  return int(sum(np.asarray(x).nbytes if not hasattr(x, "nbytes") else x.nbytes
                 for x in jax.tree.leaves(state)))


class JaxCase:
  """Compiled K-step loop and one-step call of one transform on one tree."""

  def __init__(self, tx, params, grads):
    self.params, self.grads = params, grads
    self.state = tx.init(params)
    self.state_bytes = state_bytes(self.state)

    def step(p, s, g):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    def loop(p, s, g, n):
      def body(i, carry):
        p, s, g = carry
        # Without the barrier XLA hoists the gradient-only work (g², lr·g)
        # out of the loop, and the loop times a step that reads precomputed
        # arrays instead of g: not what a training step does.
        g = jax.lax.optimization_barrier(g)
        return (*step(p, s, g), g)

      return jax.lax.fori_loop(0, n, body, (p, s, g))[:2]

    args = (params, self.state, grads)
    t = time.perf_counter()
    self.step = jax.jit(step).lower(*args).compile()
    self.compile_s = time.perf_counter() - t
    self.loop = jax.jit(loop).lower(*args, 1).compile()
    jax.block_until_ready(self.step(*args))
    jax.block_until_ready(self.loop(*args, 1))

  def run_loop(self, n):
    t = time.perf_counter()
    jax.block_until_ready(self.loop(self.params, self.state, self.grads, n))
    return time.perf_counter() - t

  def run_step(self):
    t = time.perf_counter()
    jax.block_until_ready(self.step(self.params, self.state, self.grads))
    return time.perf_counter() - t

  def final_params(self, n):
    return self.loop(self.params, self.state, self.grads, n)[0]


class TorchCase:
  """torch.optim.RMSprop(foreach=True) on tensors of the same shapes."""

  def __init__(self, shapes, config):
    import torch

    kw = {"plain": {}, "centered+momentum": dict(centered=True, momentum=0.9)}[config]
    leaves = jax.tree.leaves(shapes, is_leaf=trees.is_shape)
    self.params = [torch.full(s, 0.5, requires_grad=True) for s in leaves]
    for p in self.params:
      p.grad = torch.full(p.shape, 0.01)
    self.opt = torch.optim.RMSprop(self.params, lr=LR, alpha=0.9, foreach=True, **kw)
    self.opt.step()  # allocates the state
    self.state_bytes = sum(
        v.numel() * v.element_size() for st in self.opt.state.values()
        for v in st.values() if hasattr(v, "numel"))
    self.compile_s = None

  def run_loop(self, n):
    t = time.perf_counter()
    for _ in range(n):
      self.opt.step()
    return time.perf_counter() - t

  def run_step(self):
    return self.run_loop(1)


class CopyCase:
  """``x + 1`` over n f32 elements: reads and writes 8 bytes per element."""

  def __init__(self, n):
    self.x = jnp.zeros((n,), jnp.float32)
    self.loop = jax.jit(
        lambda x, k: jax.lax.fori_loop(0, k, lambda i, y: y + 1.0, x)
    ).lower(self.x, 1).compile()
    jax.block_until_ready(self.loop(self.x, 1))

  def run_loop(self, n):
    t = time.perf_counter()
    jax.block_until_ready(self.loop(self.x, n))
    return time.perf_counter() - t


def calibrate(case, target_s: float) -> int:
  """Steps per timed loop, so one loop runs ~target_s (noise << signal)."""
  case.run_loop(2)
  per_step = max(case.run_loop(10) / 10, 1e-7)
  return int(min(5000, max(5, target_s / per_step)))


def measure(cases: dict, reps: int, target_s: float, host: bool = True) -> dict:
  """Interleaved repeats; per case median device step and host call time.

  A repeat's device time is (t(K) - t(1)) / (K - 1): the same executable
  with trip counts K and 1, so dispatch and output allocation cancel. Ratios
  between cases are taken within each repeat (adjacent in time, so load from
  other processes mostly cancels), then the median over repeats.
  """
  ks = {name: calibrate(case, target_s) for name, case in cases.items()}
  dev = {name: [] for name in cases}
  host_s = {name: [] for name in cases}
  for _ in range(reps):
    for name, case in cases.items():
      t_k, t_1 = case.run_loop(ks[name]), case.run_loop(1)
      dev[name].append(max(t_k - t_1, 1e-9) / (ks[name] - 1))
      if host and hasattr(case, "run_step"):
        host_s[name].append(case.run_step())
  med = statistics.median
  out = {name: {"device_s": med(dev[name]), "k": ks[name],
                "device_min_s": min(dev[name]), "device_max_s": max(dev[name]),
                "host_s": med(host_s[name]) if host_s[name] else None,
                "per_rep_s": dev[name]}
         for name in cases}
  return out


def paired_ratio(res: dict, a: str, b: str, scale_b: float = 1.0):
  """Median over repeats of device(a) / (scale_b * device(b)), same repeat."""
  if a not in res or b not in res:
    return None
  return statistics.median(
      x / (scale_b * y) for x, y in zip(res[a]["per_rep_s"], res[b]["per_rep_s"]))


# ---------------------------------------------------------------- the run


def bench_cell(tree_name, shapes, config, args, cache, torch_ok):
  n = trees.num_params(shapes)
  many = len(jax.tree.leaves(shapes, is_leaf=trees.is_shape)) >= 500
  params, grads = make_tree(shapes, 0.5), make_tree(shapes, 0.01)
  cases = {}
  for impl, tx in transforms(config, many).items():
    print(f"  compile {impl:18s}", end="", flush=True)
    cases[impl] = JaxCase(tx, params, grads)
    print(f" {cases[impl].compile_s:7.2f} s", flush=True)
  if config == "nu_bf16" and (tree_name, "plain") in cache:
    cases["ours (f32 ν)"] = cache[(tree_name, "plain")]
  if torch_ok and config != "nu_bf16":
    cases["torch foreach"] = TorchCase(shapes, config)
  cases[COPY] = CopyCase(n)
  res = measure(cases, args.reps, args.target_s)
  copy = res.pop(COPY)
  cases.pop(COPY)
  bw = 8 * n / copy["device_s"]
  res[COPY] = copy
  floor = n * bytes_per_param(config) / bw
  out = {"tree": tree_name, "config": config, "params": n,
         "leaves": len(jax.tree.leaves(shapes, is_leaf=trees.is_shape)),
         "bytes_per_step": n * bytes_per_param(config),
         "floor_s": floor, "impls": {}}
  out["copy_bandwidth"] = bw
  # floor = copy time * (bytes per param / the copy's 8 bytes per element)
  floor_scale = bytes_per_param(config) / 8
  for impl, case in cases.items():
    r = res[impl]
    r.update(compile_s=case.compile_s, state_bytes=case.state_bytes,
             floor_ratio=paired_ratio(res, impl, COPY, floor_scale),
             vs_optax=paired_ratio(res, impl, "optax"),
             vs_ours=paired_ratio(res, impl, "ours"))
    if config == "nu_bf16":
      r["vs_ours_f32_nu"] = paired_ratio(res, impl, "ours (f32 ν)")
    out["impls"][impl] = r
  # Exactness after EXACT_STEPS steps: ours vs optax (same layout), stacked vs ours.
  if "ours" in cases and isinstance(cases["ours"], JaxCase):
    ref = cases["ours"].final_params(EXACT_STEPS)
    for other in ("optax", "ours+stack_leaves"):
      if other in cases:
        got = cases[other].final_params(EXACT_STEPS)
        diffs = [float(jnp.max(jnp.abs(a - b))) for a, b in
                 zip(jax.tree.leaves(ref), jax.tree.leaves(got))]
        out["impls"][other]["max_abs_diff_vs_ours"] = max(diffs)
  if config == "plain":
    cache[(tree_name, "plain")] = cases["ours"]
  return out


def table_trees(args):
  if args.quick:
    # Few leaves: compile time, not stepping, dominates a quick run.
    return {"one tensor": trees.one_tensor(1 << 20),
            "ResNet-18-like": trees.resnet18(0.25),
            f"{args.leaves or 50} leaves 64x64": trees.many_leaves(args.leaves or 50)}
  return {"one tensor": trees.one_tensor(1 << 24),
          "GPT-2-like": trees.gpt2_small(args.scale or 0.25),
          "ResNet-18-like": trees.resnet18(1.0),
          f"{args.leaves or 2000} leaves 64x64": trees.many_leaves(args.leaves or 2000)}


def sweep_sizes(args, torch_ok):
  """Step time vs parameter count, one tensor, plain config."""
  rows = []
  for n in args.sizes:
    shapes = trees.one_tensor(n)
    params, grads = make_tree(shapes, 0.5), make_tree(shapes, 0.01)
    cases = {impl: JaxCase(tx, params, grads)
             for impl, tx in transforms("plain", False).items()
             if impl not in ("ours+stack_leaves", SGD_BOUND)}
    if torch_ok:
      cases["torch foreach"] = TorchCase(shapes, "plain")
    cases[COPY] = CopyCase(n)
    res = measure(cases, args.reps, args.target_s)
    bw = 8 * n / res[COPY]["device_s"]
    row = {"params": n, "copy_bandwidth": bw,
           "floor_s": n * bytes_per_param("plain") / bw,
           "device_s": {i: r["device_s"] for i, r in res.items() if i != COPY},
           "vs_optax": {i: paired_ratio(res, i, "optax") for i in res if i != COPY}}
    rows.append(row)
    print(f"  {n:>10d} params: " + ", ".join(
        f"{i} {t * 1e3:.2f} ms" for i, t in row["device_s"].items())
        + f", floor {row['floor_s'] * 1e3:.2f} ms", flush=True)
    del cases, params, grads
    gc.collect()
  return rows


def sweep_leaves(args, table):
  """Compile time of one jitted step vs leaf count, plain config."""
  rows = []
  reuse = {c["leaves"]: c for c in table if c["config"] == "plain"
           and c["tree"].endswith("leaves 64x64")}
  for count in args.leaf_counts:
    if count in reuse:
      row = {i: r["compile_s"] for i, r in reuse[count]["impls"].items()
             if r["compile_s"] is not None}
    else:
      shapes = trees.many_leaves(count)
      params, grads = make_tree(shapes, 0.5), make_tree(shapes, 0.01)
      row = {i: JaxCase(tx, params, grads).compile_s
             for i, tx in transforms("plain", False).items()}
    rows.append({"leaves": count, "compile_s": row})
    print(f"  {count:>5d} leaves: " + ", ".join(
        f"{i} {t:.2f} s" for i, t in row.items()), flush=True)
  return rows


# ---------------------------------------------------------------- reports


def fmt_r(x):
  return "–" if x is None else f"{x:.2f}"


def fmt_t(s):
  if s is None:
    return "–"
  return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def summary(table) -> list[str]:
  """One row per cell: the ratios the README and docs quote."""
  lines = ["## Summary", "",
           "Device time ratios (median of per-repeat ratios); compile and host "
           "ratios of medians. *bf16 ν* rows compare ours with "
           "`nu_dtype=bfloat16` against ours with f32 ν.", "",
           "| tree | config | ours / step | ours × floor | optax × floor "
           "| ours vs optax | flatten vs optax | stack_leaves vs optax "
           "| torch vs optax | bound p − η·g vs optax | compile ours / optax "
           "| compile stack_leaves / optax | host stack_leaves / optax |",
           "|---" * 13 + "|"]
  for cell in table:
    im = cell["impls"]
    get = lambda impl, key: (im.get(impl) or {}).get(key)
    base = "ours (f32 ν)" if cell["config"] == "nu_bf16" else "optax"
    vs = "vs_ours_f32_nu" if cell["config"] == "nu_bf16" else "vs_optax"
    div = lambda a, b: None if a is None or not b else a / b
    lines.append(
        f"| {cell['tree']} | {cell['config']} | {fmt_t(get('ours', 'device_s'))} "
        f"| {fmt_r(get('ours', 'floor_ratio'))} | {fmt_r(get('optax', 'floor_ratio'))} "
        f"| {fmt_r(get('ours', vs))} | {fmt_r(get('optax.flatten', vs))} "
        f"| {fmt_r(get('ours+stack_leaves', vs))} | {fmt_r(get('torch foreach', vs))} "
        f"| {fmt_r(get(SGD_BOUND, vs))} "
        f"| {fmt_r(div(get('ours', 'compile_s'), get(base, 'compile_s')))} "
        f"| {fmt_r(div(get('ours+stack_leaves', 'compile_s'), get(base, 'compile_s')))} "
        f"| {fmt_r(div(get('ours+stack_leaves', 'host_s'), get(base, 'host_s')))} |")
  return lines + [""]


def markdown(info, bw_by_tree, table, sizes, leaves) -> str:
  v = info["versions"]
  lines = [f"# RMSprop step benchmarks: {info['label']}", "",
           "Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()), "",
           "Medians over interleaved repeats in one process. *device* = time "
           "per step inside a jitted `fori_loop` (slope between K and 1 "
           "steps); *host* = one jitted "
           "`update + apply_updates` call timed from Python; *floor* = bytes "
           "one step must move / measured `x + 1` copy bandwidth; "
           "*vs optax*, *vs ours*, *× floor* = median over repeats of the "
           "ratio within a repeat (for `nu_bf16`, *vs ours* is against ours "
           "with f32 ν, timed in the same repeats); *host vs optax* and "
           "*compile vs optax* are ratios of the medians (for `nu_bf16`, "
           "against ours with f32 ν).", ""] + summary(table)
  for cell in table:
    bw = cell["copy_bandwidth"]
    lines += [f"### {cell['tree']} ({cell['params'] / 1e6:.2f}M params, "
              f"{cell['leaves']} leaves), {cell['config']}", "",
              f"Floor {fmt_t(cell['floor_s'])} ({cell['bytes_per_step'] / 1e6:.0f} MB"
              f" at {bw / 1e9:.1f} GB/s).", "",
              "| implementation | device / step | × floor | vs optax | vs ours "
              "| host call | host vs optax | compile | compile vs optax "
              "| state bytes |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    # Baseline for host/compile ratios: optax, else ours with f32 ν (bf16).
    base = cell["impls"].get("optax") or cell["impls"].get("ours (f32 ν)") or {}
    div = lambda a, b: None if a is None or not b else a / b
    for impl, r in cell["impls"].items():
      vs_ours = r.get("vs_ours_f32_nu") or r["vs_ours"]
      comp = f"{r['compile_s']:.2f} s" if r["compile_s"] is not None else "–"
      lines.append(f"| {impl} | {fmt_t(r['device_s'])} | {fmt_r(r['floor_ratio'])} "
                   f"| {fmt_r(r['vs_optax'])} | {fmt_r(vs_ours)} "
                   f"| {fmt_t(r['host_s'])} | {fmt_r(div(r['host_s'], base.get('host_s')))} "
                   f"| {comp} | {fmt_r(div(r['compile_s'], base.get('compile_s')))} | "
                   f"{r['state_bytes'] / 1e6:.1f} MB |")
    diffs = {i: r["max_abs_diff_vs_ours"] for i, r in cell["impls"].items()
             if "max_abs_diff_vs_ours" in r}
    if diffs:
      lines += ["", f"Max |params − ours'| after {EXACT_STEPS} jitted loop steps: " + ", ".join(
          f"{i} {d:.3g}" for i, d in diffs.items())]
    lines.append("")
  if sizes:
    lines += ["### Step time vs parameter count (one tensor, plain)", "",
              "| params | " + " | ".join(sizes[0]["device_s"]) + " | floor | copy GB/s "
              "| ours vs optax | torch vs optax |",
              "|---" * (len(sizes[0]["device_s"]) + 5) + "|"]
    for row in sizes:
      rel = row.get("vs_optax", {})
      lines.append(f"| {row['params'] / 1e6:.1f}M | " + " | ".join(
          fmt_t(t) for t in row["device_s"].values())
          + f" | {fmt_t(row['floor_s'])} (optax {row['device_s']['optax'] / row['floor_s']:.2f}×)"
          f" | {row['copy_bandwidth'] / 1e9:.1f} "
          f"| {fmt_r(rel.get('ours'))} | {fmt_r(rel.get('torch foreach'))} |")
    lines.append("")
  if leaves:
    impls = list(leaves[-1]["compile_s"])
    lines += ["### Compile time of one jitted step vs leaf count (64×64 leaves, plain)", "",
              "| leaves | " + " | ".join(impls) + " |", "|---" * (len(impls) + 1) + "|"]
    for row in leaves:
      lines.append(f"| {row['leaves']} | " + " | ".join(
          f"{row['compile_s'][i]:.2f} s" if i in row["compile_s"] else "–"
          for i in impls) + " |")
    lines.append("")
  return "\n".join(lines)


def plots(info, sizes, leaves, out_dir: pathlib.Path):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  def finish(fig, ax, name, **labels):
    ax.set(xscale="log", yscale="log", **labels)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path = out_dir / f"{info['name']}-{name}.png"
    fig.savefig(path)
    return path

  paths = []
  if sizes:
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=90)
    xs = [r["params"] for r in sizes]
    for impl in sizes[0]["device_s"]:
      ax.plot(xs, [r["device_s"][impl] * 1e3 for r in sizes], "o-", label=impl)
    ax.plot(xs, [r["floor_s"] * 1e3 for r in sizes], "k--", label="floor (20 B/param)")
    paths.append(finish(fig, ax, "step-time", xlabel="parameters (one f32 tensor)",
                        ylabel="ms / step",
                        title=f"RMSprop step, {info['label']}"[:70]))
  if leaves:
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=90)
    for impl in leaves[-1]["compile_s"]:
      pts = [(r["leaves"], r["compile_s"][impl]) for r in leaves if impl in r["compile_s"]]
      ax.plot(*zip(*pts), "o-", label=impl)
    paths.append(finish(fig, ax, "compile-time", xlabel="leaves (64×64 f32 each)",
                        ylabel="compile s (one jitted step)",
                        title=f"Compile time, {info['label']}"[:70]))
  return paths


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true", help="small sizes, few repeats")
  ap.add_argument("--scale", type=float, help="GPT-2 width factor (default 0.25; 1 = the real 124M; not in --quick)")
  ap.add_argument("--leaves", type=int, help="leaf count of the many-leaf tree (default 2000; 50 quick)")
  ap.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")],
                  help="one-tensor sizes for the step-time plot, e.g. 1e6,4e6")
  ap.add_argument("--leaf-counts", type=lambda s: [int(x) for x in s.split(",")],
                  help="leaf counts for the compile-time plot, e.g. 10,100,2000")
  ap.add_argument("--reps", type=int, help="interleaved repeats (median)")
  ap.add_argument("--target-s", type=float, default=None, help="seconds per K-step loop")
  ap.add_argument("--configs", help="comma-separated subset of: " + ", ".join(CONFIGS))
  ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
  ap.add_argument("--torch-threads", type=int,
                  help="torch intra-op threads (default: the cores JAX uses)")
  ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"),
                  help="folder for <machine>.json/.md/-*.png")
  ap.add_argument("--render", metavar="JSON",
                  help="only re-write the .md and plots from a results JSON")
  args = ap.parse_args(argv)
  if args.render:
    res = json.loads(pathlib.Path(args.render).read_text())
    out_dir, info = pathlib.Path(args.render).parent, res["machine"]
    md = markdown(info, res["copy_bandwidth"], res["table"],
                  res["step_time_vs_params"], res["compile_time_vs_leaves"])
    (out_dir / f"{info['name']}.md").write_text(md)
    plots(info, res["step_time_vs_params"], res["compile_time_vs_leaves"], out_dir)
    return
  args.reps = args.reps or (3 if args.quick else 7)
  args.target_s = args.target_s or (0.005 if args.quick else 0.15)
  args.sizes = args.sizes or ([1 << 20] if args.quick else
                              [1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28])
  many = args.leaves or (50 if args.quick else 2000)
  args.leaf_counts = args.leaf_counts or (
      [10, many] if args.quick else [10, 100, 500, many])

  torch_ok = not args.no_torch
  if torch_ok:
    try:
      import torch

      torch.set_num_threads(args.torch_threads or len(os.sched_getaffinity(0)))
    except ImportError:
      torch_ok = False
  if torch_ok and jax.default_backend() != "cpu":
    torch_ok = False  # torch here is a CPU build; compare on one device only

  info = machine_info()
  print(info["label"], info["versions"], flush=True)
  t0 = time.perf_counter()
  table, bw_by_tree, cache = [], {}, {}
  for tree_name, shapes in table_trees(args).items():
    n = trees.num_params(shapes)
    print(f"{tree_name}: {n / 1e6:.2f}M params", flush=True)
    for config in (args.configs or ("plain,nu_bf16" if args.quick else ",".join(CONFIGS))).split(","):
      print(f" {config}", flush=True)
      cell = bench_cell(tree_name, shapes, config, args, cache, torch_ok)
      bw_by_tree[f"{tree_name}, {config}"] = cell["copy_bandwidth"]
      print(f"   copy {cell['copy_bandwidth'] / 1e9:.1f} GB/s, floor "
            f"{fmt_t(cell['floor_s'])}", flush=True)
      for impl, r in cell["impls"].items():
        print(f"   {impl:18s} device {fmt_t(r['device_s']):>9s} "
              f"({r['floor_ratio']:.2f}× floor, {fmt_r(r['vs_optax'])}× optax) "
              f"host {fmt_t(r['host_s']):>9s}", flush=True)
      table.append(cell)
    cache.clear()
    gc.collect()
  print("step time vs size", flush=True)
  sizes = sweep_sizes(args, torch_ok)
  print("compile time vs leaves", flush=True)
  leaves = sweep_leaves(args, table)
  elapsed = time.perf_counter() - t0

  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  stem = info["name"] + ("-quick" if args.quick else "")
  info_out = dict(info, name=stem)
  result = {"machine": info_out, "args": {k: v for k, v in vars(args).items()},
            "elapsed_s": elapsed, "copy_bandwidth": bw_by_tree, "table": table,
            "step_time_vs_params": sizes, "compile_time_vs_leaves": leaves}
  (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1))
  (out_dir / f"{stem}.md").write_text(markdown(info, bw_by_tree, table, sizes, leaves))
  paths = plots(info_out, sizes, leaves, out_dir)
  print(f"wrote {out_dir / stem}.json, .md, " + ", ".join(p.name for p in paths))
  print(f"total {elapsed:.0f} s")


if __name__ == "__main__":
  main()
