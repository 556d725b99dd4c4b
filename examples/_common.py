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

# name -> (factory of the learning rate, its usual learning rate). Each
# optimizer runs at a learning rate standard for it, so the comparison is of
# optimizers at their usual settings, not at one shared lr.
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


def make_optimizer(name: str, lr_scale: float = 1.0) -> optax.GradientTransformation:
  """The optimizer called ``name`` in :data:`OPTIMIZERS`, its lr times ``lr_scale``."""
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; one of {sorted(OPTIMIZERS)}")
  factory, lr = OPTIMIZERS[name]
  return factory(lr * lr_scale)


def optimizer_label(name: str, lr_scale: float = 1.0) -> str:
  return f"{name} (lr {OPTIMIZERS[name][1] * lr_scale:g})"


def shuffled_batches(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
  """Indices of one epoch as ``[steps, batch_size]`` (drops the remainder)."""
  steps = n // batch_size
  return rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)


def plot_histories(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    path: str,
    title: str,
    metric: str = "test_accuracy",
    metric_label: str = "test accuracy",
) -> str:
  """Train loss (per epoch) and a held-out metric of several runs, one PNG."""
  fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
  for name, h in histories.items():
    epochs = np.arange(1, len(h["train_loss"]) + 1)
    ax_loss.plot(epochs, h["train_loss"], label=name)
    ax_metric.plot(epochs, h[metric], label=name)
  ax_loss.set(xlabel="epoch", ylabel="train loss (mean over epoch)", yscale="log")
  ax_metric.set(xlabel="epoch", ylabel=metric_label)
  for ax in (ax_loss, ax_metric):
    ax.grid(alpha=0.3)
  ax_metric.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path)


def save_figure(fig, path: str) -> str:
  """Writes ``fig`` to ``path`` (creating its folder) and closes it."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path


def write_json(obj, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  return path
