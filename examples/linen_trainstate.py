"""Linen ``TrainState`` with optax_rmsprop under a schedule and clipping.

    python examples/linen_trainstate.py           # digits MLP, warmup-cosine lr, seeds 0, 1, 2
    python examples/linen_trainstate.py --quick   # CI mode: one seed, 3 epochs

The Linen path: ``TrainState.create(apply_fn=..., params=..., tx=...)`` and
``state.apply_gradients(grads=...)``. The ``tx`` is an ordinary optax chain,
``clip_by_global_norm`` then :func:`optax_rmsprop.rmsprop` with a
``warmup_cosine_decay_schedule`` as its learning rate (the schedule is called
with the update count, from 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from tqdm.auto import tqdm

import optax_rmsprop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402
from digits import train as digits_train  # noqa: E402


@dataclasses.dataclass
class Config:
  epochs: int = 30
  batch_size: int = 32
  peak_lr: float = 3e-3
  warmup_epochs: int = 2
  clip_norm: float = 1.0
  hidden: int = 256
  seed: int = 0
  progress: bool = True


class MLP(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(10)(x)


def make_tx(config: Config, steps_per_epoch: int):
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.peak_lr,
      warmup_steps=config.warmup_epochs * steps_per_epoch,
      decay_steps=config.epochs * steps_per_epoch)
  # Clip first so that one outlier batch cannot inflate the RMS state.
  tx = optax.chain(
      optax.clip_by_global_norm(config.clip_norm),
      optax_rmsprop.rmsprop(schedule, centered=True),
  )
  return tx, schedule


def train_and_evaluate(config: Config) -> dict:
  x_train, y_train, x_test, y_test = digits_train.load_data()  # one split for all seeds
  steps_per_epoch = len(x_train) // config.batch_size
  tx, schedule = make_tx(config, steps_per_epoch)
  model = MLP(config.hidden)
  params = model.init(jax.random.key(config.seed), x_train[:1])["params"]
  state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  def loss_fn(params, x, y):
    logits = state.apply_fn({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

  @jax.jit
  def train_epoch(state, xs, ys):
    def step(state, batch):
      (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, *batch)
      return state.apply_gradients(grads=grads), (loss, optax.tree.norm(grads))
    return jax.lax.scan(step, state, (xs, ys))

  @jax.jit
  def evaluate(params, x, y):
    loss, logits = loss_fn(params, x, y)
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)

  rng = np.random.default_rng(config.seed)
  history = {"train_loss": [], "test_loss": [], "test_accuracy": [], "step_loss": [],
             "grad_norm": [], "lr": []}
  start = time.perf_counter()
  bar = tqdm(range(config.epochs), desc="TrainState", disable=not config.progress)
  for _ in bar:
    idx = _common.shuffled_batches(rng, len(x_train), config.batch_size)
    state, (losses, norms) = train_epoch(state, x_train[idx], y_train[idx])
    test_loss, test_acc = evaluate(state.params, x_test, y_test)
    history["step_loss"].extend(np.asarray(losses).tolist())
    history["grad_norm"].extend(np.asarray(norms).tolist())
    history["train_loss"].append(float(np.mean(losses)))
    history["test_loss"].append(float(test_loss))
    history["test_accuracy"].append(float(test_acc))
    bar.set_postfix(loss=f"{np.mean(losses):.4f}", test_acc=f"{float(test_acc):.4f}")
  history["lr"] = [float(schedule(i)) for i in range(int(state.step))]
  history["wall_s"] = time.perf_counter() - start
  history["steps"] = int(state.step)
  return history


def plot(history: dict, path: str, title: str) -> str:
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), dpi=80)
  steps = np.arange(len(history["step_loss"]))
  axes[0].plot(steps, history["lr"])
  axes[0].set(xlabel="step", ylabel="learning rate", title="warmup + cosine")
  axes[1].plot(steps, history["step_loss"], lw=0.6, label="train (per step)")
  epochs = len(history["test_loss"])
  epochs_end = (np.arange(epochs) + 1) * (len(steps) // epochs)
  axes[1].plot(epochs_end, history["test_loss"], "o-", ms=3, label="test")
  axes[1].set(xlabel="step", ylabel="cross-entropy", yscale="log")
  axes[1].legend(fontsize=8)
  axes[2].plot(epochs_end, history["test_accuracy"], "o-", ms=3)
  axes[2].set(xlabel="step", ylabel="test accuracy")
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return _common.save_figure(fig, path)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=None,
                      help="default 30; --quick: 3")
  parser.add_argument("--peak-lr", type=float, default=Config.peak_lr)
  parser.add_argument("--clip-norm", type=float, default=Config.clip_norm)
  _common.add_seed_argument(parser)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default=None, help=f"default {_common.RESULTS_DIR}")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  epochs = args.epochs or (3 if args.quick else Config.epochs)
  config = Config(epochs=epochs, peak_lr=args.peak_lr, clip_norm=args.clip_norm,
                  warmup_epochs=1 if args.quick else Config.warmup_epochs,
                  progress=not args.no_progress)
  out = _common.output_dir(args.out, args.quick, "linen_")
  print(f"\nlinen TrainState, rmsprop(centered) + clip_by_global_norm({config.clip_norm}) "
        f"+ warmup_cosine(peak {config.peak_lr:g}), {epochs} epochs")
  histories = {}
  for seed in _common.seeds_from(args):
    h = histories[seed] = train_and_evaluate(dataclasses.replace(config, seed=seed))
    clipped = np.mean(np.asarray(h["grad_norm"]) > config.clip_norm)
    print(f"seed {seed}: test accuracy {h['test_accuracy'][-1]:.4f}, test loss "
          f"{h['test_loss'][-1]:.4f}, steps clipped {clipped:.1%}, {h['steps']} steps, "
          f"{h['wall_s']:.1f} s")
  summary = _common.summarize({s: h["test_accuracy"][-1] for s, h in histories.items()},
                              higher_is_better=True)
  print(f"test accuracy: {_common.format_summary(summary)}")
  first = min(histories)
  png = plot(histories[first], os.path.join(out, "linen_trainstate.png"),
             f"Linen TrainState, digits MLP, rmsprop(centered) + clip + warmup-cosine, "
             f"{epochs} epochs, seed {first}")
  _common.write_json(
      {"summary": {"test_accuracy": summary},
       "seeds": {str(s): {k: v for k, v in h.items()
                          if k not in ("step_loss", "lr", "grad_norm")}
                 for s, h in histories.items()}},
      os.path.join(out, "linen_trainstate.json"))
  print(f"wrote {png}")
  return histories


if __name__ == "__main__":
  main()
