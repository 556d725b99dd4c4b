"""Digits (8x8) classifiers in Flax NNX, trained with optax_rmsprop.

The library half of the digits examples, after flax's ``examples/mnist``:
models, data, a jitted epoch and :func:`train_and_evaluate`, importable from
tests and notebooks; ``digits_mlp.py`` and ``digits_cnn.py`` are thin
command-line entry points.
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


@dataclasses.dataclass
class Config:
  model: str = "mlp"  # "mlp" or "cnn"
  optimizers: Sequence[str] = tuple(_common.OPTIMIZERS)
  epochs: int = 30
  batch_size: int = 32
  lr_scale: float = 1.0  # multiplies every optimizer's usual lr
  hidden: int = 256
  test_fraction: float = 0.25
  seed: int = 0
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
  ``(x_train, y_train, x_test, y_test)``.
  """
  digits = load_digits()
  x = (digits.images / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = train_test_split(
      x, y, test_size=test_fraction, random_state=seed, stratify=y)
  return x_train, y_train, x_test, y_test


def make_model(config: Config) -> nnx.Module:
  rngs = nnx.Rngs(config.seed)
  if config.model == "mlp":
    return MLP(config.hidden, rngs=rngs)
  if config.model == "cnn":
    return CNN(config.hidden, rngs=rngs)
  raise ValueError(f"unknown model {config.model!r}")


def loss_fn(model, x, y):
  logits = model(x)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss, logits


def train_one(config: Config, optimizer_name: str, data) -> dict:
  """Trains one model with one optimizer; returns its per-epoch history."""
  x_train, y_train, x_test, y_test = data
  model = make_model(config)
  tx = _common.make_optimizer(optimizer_name, config.lr_scale)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  # Split once and scan a whole epoch inside one jit: on a CPU the per-step
  # Python overhead would otherwise dominate these tiny models.
  graphdef, state = nnx.split((model, optimizer))

  @jax.jit
  def train_epoch(state, xs, ys):
    def step(state, batch):
      model, optimizer = nnx.merge(graphdef, state)
      (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, *batch)
      optimizer.update(model, grads)
      return nnx.state((model, optimizer)), loss
    return jax.lax.scan(step, state, (xs, ys))

  @jax.jit
  def evaluate(state, x, y):
    model, _ = nnx.merge(graphdef, state)
    loss, logits = loss_fn(model, x, y)
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)

  rng = np.random.default_rng(config.seed)
  history = {"train_loss": [], "test_loss": [], "test_accuracy": [], "step_loss": []}
  start = time.perf_counter()
  bar = tqdm(range(config.epochs), desc=f"{optimizer_name:>16}",
             disable=not config.progress, leave=True)
  for _ in bar:
    idx = _common.shuffled_batches(rng, len(x_train), config.batch_size)
    state, losses = train_epoch(state, x_train[idx], y_train[idx])
    test_loss, test_acc = evaluate(state, x_test, y_test)
    losses = np.asarray(losses)
    history["step_loss"].extend(losses.tolist())
    history["train_loss"].append(float(losses.mean()))
    history["test_loss"].append(float(test_loss))
    history["test_accuracy"].append(float(test_acc))
    bar.set_postfix(loss=f"{losses.mean():.4f}", test_acc=f"{float(test_acc):.4f}")
  history["wall_s"] = time.perf_counter() - start
  history["steps"] = len(history["step_loss"])
  return history


def train_and_evaluate(config: Config) -> dict:
  """Trains one model per optimizer in ``config.optimizers`` on the same data,
  init and batch order; returns ``{optimizer name: history}``."""
  data = load_data(config.test_fraction, config.seed)
  return {name: train_one(config, name, data) for name in config.optimizers}
