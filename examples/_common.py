"""Helpers shared by the examples: the optimizers compared, plots, output."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import optax_rmsprop  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def output_dir(out: str | None, quick: bool, prefix: str) -> str:
  """Where a script writes: ``--out``, else a temp dir for ``--quick`` runs
  (so smoke runs never overwrite the committed results), else results/."""
  return out or (tempfile.mkdtemp(prefix=prefix) if quick else RESULTS_DIR)

# name -> (factory of the learning rate, its usual learning rate). The usual
# lr is the centre of each optimizer's sweep (digits/train.py), which then
# picks the lr the comparison uses.
OPTIMIZERS: Mapping[str, tuple[Callable[[float], optax.GradientTransformation], float]] = {
    "rmsprop": (optax_rmsprop.rmsprop, 1e-3),
    "rmsprop_centered": (
        lambda lr: optax_rmsprop.rmsprop(lr, centered=True), 1e-3),
    # momentum 0.9 multiplies the steady-state step by 10: lr / 10 keeps it.
    "rmsprop_momentum": (
        lambda lr: optax_rmsprop.rmsprop(lr, momentum=0.9), 1e-4),
    "sgd": (optax.sgd, 0.1),
    "adam": (optax.adam, 1e-3),
}


def shuffled_batches(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
  """Indices of one epoch as ``[steps, batch_size]`` (drops the remainder)."""
  steps = n // batch_size
  return rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)


def plot_histories(
    histories: Mapping[str, Sequence[Mapping[str, Sequence[float]]]],
    path: str,
    title: str,
    metric: str = "test_accuracy",
    metric_label: str = "test accuracy",
) -> str:
  """Train loss (per epoch) and a held-out metric of several optimizers, each
  over several seeds: the mean as a line, min-max over seeds as a band."""
  fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
  for i, (name, runs) in enumerate(histories.items()):
    for ax, key in ((ax_loss, "train_loss"), (ax_metric, metric)):
      values = np.array([h[key] for h in runs])
      epochs = np.arange(1, values.shape[1] + 1)
      ax.plot(epochs, values.mean(0), color=f"C{i}", label=name)
      if len(runs) > 1:
        ax.fill_between(epochs, values.min(0), values.max(0), color=f"C{i}",
                        alpha=0.2, lw=0)
  ax_loss.set(xlabel="epoch", ylabel="train loss (mean over epoch)", yscale="log")
  ax_metric.set(xlabel="epoch", ylabel=metric_label)
  for ax in (ax_loss, ax_metric):
    ax.grid(alpha=0.3)
  ax_metric.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path)


def plot_sweep(sweeps: Mapping[str, Mapping], path: str, title: str) -> str:
  """Validation accuracy and loss against the learning rate, one line per
  optimizer (mean over seeds, bars: min-max), the chosen lr starred."""
  fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
  for i, (name, sw) in enumerate(sweeps.items()):
    lrs = np.asarray(sw["lrs"])
    best = list(lrs).index(sw["best_lr"])
    for ax, key in ((ax_acc, "val_accuracy"), (ax_loss, "val_loss")):
      values = np.asarray(sw[key])  # [lr, seed]
      mean = values.mean(1)
      ax.errorbar(lrs, mean, yerr=[mean - values.min(1), values.max(1) - mean],
                  color=f"C{i}", marker="o", ms=3, capsize=2, lw=1,
                  label=name if ax is ax_acc else None)
      ax.plot(lrs[best], mean[best], "*", ms=12, color=f"C{i}", mec="k", mew=0.5)
  ax_acc.set(xlabel="learning rate", ylabel="validation accuracy", xscale="log")
  ax_loss.set(xlabel="learning rate", ylabel="validation loss", xscale="log",
              yscale="log")
  for ax in (ax_acc, ax_loss):
    ax.grid(alpha=0.3)
  ax_acc.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path)


def save_figure(fig, path: str) -> str:
  """Writes ``fig`` to ``path`` (creating its folder) and closes it."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path


def add_seed_argument(parser) -> None:
  parser.add_argument("--seeds", type=int, nargs="+", default=None,
                      help="default: 0 1 2; --quick: 0")


def seeds_from(args) -> list[int]:
  """``--seeds``, else one seed for ``--quick`` (CI) and three otherwise."""
  return args.seeds or ([0] if args.quick else [0, 1, 2])


def summarize(per_seed: Mapping[int, float], higher_is_better: bool) -> dict:
  """Mean, sample standard deviation (ddof 1; 0 for one seed) and the worst
  seed of one result measured on several seeds."""
  seeds = list(per_seed)
  values = np.array([per_seed[s] for s in seeds], dtype=float)
  worst = int(np.argmin(values) if higher_is_better else np.argmax(values))
  return {"mean": float(values.mean()),
          "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
          "worst": float(values[worst]), "worst_seed": seeds[worst],
          "per_seed": {str(s): float(v) for s, v in zip(seeds, values)},
          "higher_is_better": higher_is_better}


def format_summary(summary: dict, fmt: str = "{:.4f}") -> str:
  """``0.9733 ± 0.0021 (worst 0.9711, seed 2; seeds 0, 1, 2)``."""
  f = fmt.format
  seeds = ", ".join(summary["per_seed"])
  if len(summary["per_seed"]) == 1:
    return f"{f(summary['mean'])} (seed {seeds})"
  return (f"{f(summary['mean'])} ± {f(summary['std'])} (worst "
          f"{f(summary['worst'])}, seed {summary['worst_seed']}; seeds {seeds})")


# The quantiles the examples log, and the leaves they plot them for.
STAT_QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)


def stats_history(stats_list: Sequence[Mapping[str, np.ndarray]]) -> dict:
  """A list of ``rms_stats`` dicts (or of stacked ones) -> {key: list}."""
  out: dict[str, list] = {}
  for stats in stats_list:
    for key, value in stats.items():
      out.setdefault(key, []).extend(np.atleast_1d(np.asarray(value)).tolist())
  return out


def stat_leaves(history: Mapping[str, Sequence[float]]) -> list[str]:
  """The leaf names in an ``rms_stats`` history, in key order."""
  prefix, suffix = "step_size/", "/p50"
  return [k[len(prefix):-len(suffix)] for k in sorted(history)
          if k.startswith(prefix) and k.endswith(suffix)]


def step_size_lines(history: Mapping[str, Sequence[float]],
                    steps: Sequence[int], unit: str = "step") -> list[str]:
  """A logged ``rms_stats`` history as text: per leaf, the median step size
  and its 5-95% range at the first, middle and last record, and how many
  elements have ν = 0 at the end."""
  records = sorted({0, len(steps) // 2, len(steps) - 1})
  lines = [f"  effective step size lr/sqrt(v + eps), median [5%, 95%] at {unit} "
           + " / ".join(str(steps[r]) for r in records) + ", and elements with nu = 0:"]
  for leaf in stat_leaves(history):
    get = lambda q, r: history[f"step_size/{leaf}/{q}"][r]  # noqa: E731
    cells = [f"{get('p50', r):.2e} [{get('p5', r):.1e}, {get('p95', r):.1e}]"
             for r in records]
    lines.append(f"    {leaf:<24} " + " / ".join(cells)
                 + f"  nu=0: {int(history[f'nu_zero/{leaf}'][-1])}")
  return lines


def step_size_figure(left_rows: int, leaves: Sequence[str]):
  """A figure with ``left_rows`` panels on the left (the training curves)
  and one small panel per leaf on the right (step sizes); returns
  ``(fig, left_axes, leaf_axes)``."""
  cols = 3 if len(leaves) > 4 else 2
  rows = max(-(-len(leaves) // cols), left_rows)
  fig = plt.figure(figsize=(4.2 + 2.6 * cols, 2.3 * rows + 0.5), dpi=80)
  grid = fig.add_gridspec(rows, 2 + cols, width_ratios=[1.6, 0.05] + [1] * cols)
  per_left = rows // left_rows
  left = [fig.add_subplot(grid[i * per_left:(i + 1) * per_left, 0])
          for i in range(left_rows)]
  right = [fig.add_subplot(grid[i // cols, 2 + i % cols])
           for i in range(len(leaves))]
  return fig, left, right


def draw_step_sizes(axes, steps, history, leaves, eps: float) -> None:
  """Quantile bands of the effective step size over training, one panel per
  leaf: min-max (light), 5-95% (dark), median (line), and the largest step
  ε allows, lr / √ε (dashed), which a leaf with v << ε sits at."""
  cap = np.asarray(history["learning_rate"]) / np.sqrt(eps)
  for ax, leaf in zip(axes, leaves):
    ax.plot(steps, cap, color="gray", ls="--", lw=0.8, label="lr / √ε")
    get = lambda q: np.asarray(history[f"step_size/{leaf}/{q}"])  # noqa: E731
    ax.fill_between(steps, get("min"), get("max"), color="C0", alpha=0.15,
                    lw=0, label="min-max")
    ax.fill_between(steps, get("p5"), get("p95"), color="C0", alpha=0.4, lw=0,
                    label="5-95%")
    ax.plot(steps, get("p50"), color="C0", lw=1, label="median")
    ax.set_yscale("log")
    ax.set_title(leaf, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  if axes:
    axes[0].set_ylabel("step size  η / √(v + ε)", fontsize=8)
    axes[0].legend(fontsize=6, loc="best")


def _json_text(obj, indent: int = 0) -> str:
  """JSON with one key per line but each list of numbers on one line, and
  floats to 7 significant digits (float32's precision): the logged
  histories stay a few hundred kB."""
  pad = " " * (indent + 1)
  if isinstance(obj, float):
    return json.dumps(float(f"{obj:.7g}"))
  if isinstance(obj, dict) and obj:
    items = [f"{pad}{json.dumps(str(k))}: {_json_text(v, indent + 1)}"
             for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))]
    return "{\n" + ",\n".join(items) + "\n" + pad[:-1] + "}"
  if isinstance(obj, (list, tuple)):
    if any(isinstance(v, (dict, list, tuple)) for v in obj):
      items = [pad + _json_text(v, indent + 1) for v in obj]
      return "[\n" + ",\n".join(items) + "\n" + pad[:-1] + "]"
    return "[" + ", ".join(_json_text(v, indent + 1) for v in obj) + "]"
  return json.dumps(obj)


def write_json(obj, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(_json_text(obj) + "\n")
  return path
