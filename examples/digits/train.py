"""Digits (8x8) classifiers in Flax NNX, trained with optax_rmsprop.

The library half of the digits examples, after flax's ``examples/mnist``:
models, data, a jitted epoch and :func:`train_and_evaluate`, importable from
tests and notebooks; ``digits_mlp.py`` and ``digits_cnn.py`` are thin
command-line entry points.

The comparison is fair by construction: every optimizer gets the same
learning-rate sweep (its usual lr times the same multipliers, on the same
seed), is judged at the lr that did best on a validation split carved out of
the training data, and is then trained on the whole training split with
three seeds; the test set is used once, for the table. The runs of a sweep
(and the seeds of the final runs) train at once under ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

import _common

# The sweep: each optimizer's usual lr times these (a factor sqrt(10) apart).
LR_MULTIPLIERS = tuple(float(10**k) for k in (-1, -0.5, 0, 0.5, 1))


@dataclasses.dataclass
class Config:
  model: str = "mlp"  # "mlp" or "cnn"
  optimizers: Sequence[str] = tuple(_common.OPTIMIZERS)
  epochs: int = 30
  batch_size: int = 32
  lr_multipliers: Sequence[float] = LR_MULTIPLIERS  # (1,): no sweep
  sweep_seeds: Sequence[int] = (0,)  # the sweep's runs per lr
  seeds: Sequence[int] = (0, 1, 2)  # the final runs, at the chosen lr
  hidden: int = 256
  test_fraction: float = 0.25
  val_fraction: float = 0.2  # of the training split, for the sweep only
  progress: bool = True


class MLP(nnx.Module):
  """64 pixels -> two ReLU layers -> 10 logits."""

  def __init__(self, hidden: int, *, rngs: nnx.Rngs):
    self.layer1 = nnx.Linear(64, hidden, rngs=rngs)
    self.layer2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    x = nnx.relu(self.layer1(x))
    x = nnx.relu(self.layer2(x))
    return self.head(x)


class CNN(nnx.Module):
  """8x8x1 -> 3x3 conv -> 2x2 max pool -> 3x3 conv -> dense -> 10 logits.

  Pooling before the second conv keeps it at 4x4: a CPU trains it in seconds.
  """

  def __init__(self, hidden: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.dense = nnx.Linear(4 * 4 * 64, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], 8, 8, 1)
    x = nnx.relu(self.conv1(x))
    x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = nnx.relu(self.conv2(x))
    x = nnx.relu(self.dense(x.reshape(x.shape[0], -1)))
    return self.head(x)


def load_data(test_fraction: float = 0.25, seed: int = 0):
  """scikit-learn's bundled digits (no download), a fixed stratified split.

  Returns float32 images in [0, 1] of shape ``[n, 8, 8]`` and int32 labels:
  ``(x_train, y_train, x_test, y_test)``. ``seed`` picks the split; the
  examples keep it at 0, so every seed is scored on the same test images.
  """
  digits = load_digits()
  x = (digits.images / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = train_test_split(
      x, y, test_size=test_fraction, random_state=seed, stratify=y)
  return x_train, y_train, x_test, y_test


def make_model(model: str, hidden: int, seed: int) -> nnx.Module:
  rngs = nnx.Rngs(seed)
  if model == "mlp":
    return MLP(hidden, rngs=rngs)
  if model == "cnn":
    return CNN(hidden, rngs=rngs)
  raise ValueError(f"unknown model {model!r}")


def loss_fn(model, x, y):
  logits = model(x)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss, logits


def train_models(config: Config, name: str, runs: Sequence[tuple[float, int]],
                 x_fit, y_fit, x_eval, y_eval, desc: str) -> list[dict]:
  """Trains one model per ``(learning rate, seed)`` in ``runs``, all at once.

  A seed fixes the initial weights and the batch order, so runs of one seed
  differ only in their optimizer and lr. The lr enters the optimizer state
  through ``optax.inject_hyperparams``, which is what lets one ``jax.vmap``
  train every run; each history has the per-epoch train loss and the loss
  and accuracy on ``(x_eval, y_eval)``.
  """
  factory = _common.OPTIMIZERS[name][0]
  tx = optax.inject_hyperparams(lambda learning_rate: factory(learning_rate))
  states, graphdef = [], None
  for lr, seed in runs:
    model = make_model(config.model, config.hidden, seed)
    optimizer = nnx.Optimizer(model, tx(learning_rate=lr), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    states.append(state)
  state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)

  @jax.jit
  @jax.vmap
  def train_epoch(state, xs, ys):
    def step(state, batch):
      model, optimizer = nnx.merge(graphdef, state)
      (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, *batch)
      optimizer.update(model, grads)
      return nnx.state((model, optimizer)), loss
    return jax.lax.scan(step, state, (xs, ys))

  @jax.jit
  @jax.vmap
  def evaluate(state):
    model, _ = nnx.merge(graphdef, state)
    loss, logits = loss_fn(model, x_eval, y_eval)
    return loss, jnp.mean(jnp.argmax(logits, -1) == y_eval)

  rngs = {seed: np.random.default_rng(seed) for _, seed in runs}
  histories = [{"lr": lr, "seed": seed, "train_loss": [], "eval_loss": [],
                "eval_accuracy": []} for lr, seed in runs]
  start = time.perf_counter()
  bar = tqdm(range(config.epochs), desc=desc, disable=not config.progress, leave=False)
  for _ in bar:
    order = {seed: _common.shuffled_batches(rng, len(x_fit), config.batch_size)
             for seed, rng in rngs.items()}
    idx = np.stack([order[seed] for _, seed in runs])
    state, losses = train_epoch(state, x_fit[idx], y_fit[idx])
    eval_loss, eval_acc = (np.asarray(v) for v in evaluate(state))
    for i, h in enumerate(histories):
      h.setdefault("first_step_loss", float(losses[i][0]))
      h["train_loss"].append(float(np.mean(losses[i])))
      h["eval_loss"].append(float(eval_loss[i]))
      h["eval_accuracy"].append(float(eval_acc[i]))
    bar.set_postfix(eval_acc=f"{eval_acc.mean():.4f}")
  wall_s = time.perf_counter() - start
  for h in histories:
    h["steps"] = config.epochs * (len(x_fit) // config.batch_size)
    h["wall_s"] = wall_s  # all runs together
  return histories


def sweep(config: Config, name: str, data) -> dict:
  """Validation accuracy of each lr of the sweep, over the seeds; picks the
  lr with the best mean validation accuracy (ties: the lower mean loss)."""
  usual = _common.OPTIMIZERS[name][1]
  lrs = [usual * m for m in config.lr_multipliers]
  if len(lrs) == 1:
    return {"lrs": lrs, "best_lr": lrs[0]}
  x_train, y_train, _, _ = data
  x_fit, x_val, y_fit, y_val = train_test_split(
      x_train, y_train, test_size=config.val_fraction, random_state=0,
      stratify=y_train)
  runs = [(lr, seed) for lr in lrs for seed in config.sweep_seeds]
  histories = train_models(config, name, runs, x_fit, y_fit, x_val, y_val,
                           desc=f"{name} sweep")
  acc = np.array([h["eval_accuracy"][-1] for h in histories]).reshape(len(lrs), -1)
  loss = np.array([h["eval_loss"][-1] for h in histories]).reshape(len(lrs), -1)
  best = min(range(len(lrs)), key=lambda i: (-acc[i].mean(), loss[i].mean()))
  return {"lrs": lrs, "best_lr": lrs[best],
          "val_accuracy": acc.tolist(), "val_loss": loss.tolist(),
          "wall_s": histories[0]["wall_s"]}


def train_and_evaluate(config: Config) -> dict:
  """For each optimizer: its sweep, then one run per seed at the chosen lr
  on the whole training split, scored on the test split. Returns
  ``{optimizer: {"sweep": ..., "seeds": {seed: history}}}``."""
  data = load_data(config.test_fraction)
  x_train, y_train, x_test, y_test = data
  results = {}
  for name in config.optimizers:
    chosen = sweep(config, name, data)
    runs = [(chosen["best_lr"], seed) for seed in config.seeds]
    histories = train_models(config, name, runs, x_train, y_train, x_test, y_test,
                             desc=f"{name} final")
    results[name] = {"sweep": chosen, "seeds": {
        seed: {"train_loss": h["train_loss"], "test_loss": h["eval_loss"],
               "test_accuracy": h["eval_accuracy"], "steps": h["steps"],
               "first_step_loss": h["first_step_loss"],
               "wall_s": h["wall_s"]}
        for (_, seed), h in zip(runs, histories)}}
  return results
