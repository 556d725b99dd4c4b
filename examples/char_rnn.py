"""Character-level GRU language model (Flax NNX), centered RMSprop + momentum.

    python examples/char_rnn.py           # seeds 0, 1, 2: held-out bits per char, samples
    python examples/char_rnn.py --quick   # CI mode: one seed, 60 steps

The optimizer of Graves (2013), "Generating Sequences With Recurrent Neural
Networks", Eq. (38)-(41): centered RMSprop (decay 0.95, eps 1e-4 inside the
root) with momentum 0.9 added to lr-scaled steps, which is
``optax_rmsprop.rmsprop(lr, decay=0.95, eps=1e-4, centered=True,
momentum=0.9)``. Graves clipped each derivative; we clip the global norm.
Every ``log_every`` steps the script records :func:`optax_rmsprop.rms_stats`
of the optimizer: quantiles of each layer's effective step size
lr / sqrt(v + eps), with v the centered variance, plotted next to the loss.

The text ships with Python: the docstrings of a fixed list of standard
library modules, so it needs no download and is the same on every run of
one Python version. The last tenth is held out.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import math
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import optax_rmsprop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

MODULES = ("argparse", "collections", "functools", "textwrap", "json", "pathlib",
           "dataclasses", "logging", "random", "statistics", "fractions", "decimal",
           "heapq", "bisect", "contextlib", "enum", "inspect", "string", "shutil",
           "tempfile", "unittest", "threading", "subprocess", "typing", "datetime")
DECAY, EPS = 0.95, 1e-4  # Graves (2013), Eq. (38)-(41)


@dataclasses.dataclass
class Config:
  steps: int = 1500
  eval_every: int = 100
  log_every: int = 20  # steps between rms_stats records
  batch_size: int = 32
  seq_len: int = 64
  embed: int = 32
  hidden: int = 192
  learning_rate: float = 2e-3
  clip_norm: float = 1.0
  max_chars: int = 400_000
  seed: int = 0
  progress: bool = True


def load_text(max_chars: int) -> str:
  """Docstrings of :data:`MODULES` and their public members, in a fixed order."""
  docs, seen = [], set()
  for name in MODULES:
    module = importlib.import_module(name)
    # Members that are modules would repeat (or deprecate: typing.io) text.
    objects = [module] + [getattr(module, a) for a in sorted(vars(module))
                          if not a.startswith("_")
                          and not inspect.ismodule(getattr(module, a))]
    for obj in objects:
      with warnings.catch_warnings():  # deprecated aliases warn on access (typing.io)
        warnings.simplefilter("ignore", DeprecationWarning)
        doc = inspect.getdoc(obj) if not isinstance(obj, (str, int, float, bytes)) else None
      if doc and doc not in seen:
        seen.add(doc)
        docs.append(doc)
  text = "\n\n".join(docs)
  text = "".join(c for c in text if c == "\n" or " " <= c <= "~")  # printable ASCII
  return text[:max_chars]


class CharRNN(nnx.Module):

  def __init__(self, vocab: int, embed: int, hidden: int, *, rngs: nnx.Rngs):
    self.hidden = hidden
    self.embed = nnx.Embed(vocab, embed, rngs=rngs)
    self.rnn = nnx.RNN(nnx.GRUCell(embed, hidden, rngs=rngs), return_carry=True)
    self.head = nnx.Linear(hidden, vocab, rngs=rngs)

  def __call__(self, tokens, carry=None):
    if carry is None:
      carry = jnp.zeros((tokens.shape[0], self.hidden))
    carry, h = self.rnn(self.embed(tokens), initial_carry=carry)
    return self.head(h), carry


def nats(logits, targets):
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def make_tx(config: Config):
  return optax.chain(
      optax.clip_by_global_norm(config.clip_norm),
      optax_rmsprop.rmsprop(config.learning_rate, decay=DECAY, eps=EPS,
                            centered=True, momentum=0.9),
  )


def train_and_evaluate(config: Config) -> dict:
  text = load_text(config.max_chars)
  vocab = sorted(set(text))
  lookup = {c: i for i, c in enumerate(vocab)}
  data = np.fromiter((lookup[c] for c in text), dtype=np.int32, count=len(text))
  split = int(0.9 * len(data))
  train, test = data[:split], data[split:]

  model = CharRNN(len(vocab), config.embed, config.hidden, rngs=nnx.Rngs(config.seed))
  optimizer = nnx.Optimizer(model, make_tx(config), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))

  @jax.jit
  def train_chunk(state, windows):  # windows: [logs, steps, batch, seq_len + 1]
    def step(state, window):
      model, optimizer = nnx.merge(graphdef, state)
      def loss_fn(model):
        return nats(model(window[:, :-1])[0], window[:, 1:])
      loss, grads = nnx.value_and_grad(loss_fn)(model)
      optimizer.update(model, grads)
      return nnx.state((model, optimizer)), loss
    def logged(state, windows):
      state, losses = jax.lax.scan(step, state, windows)
      _, optimizer = nnx.merge(graphdef, state)
      # The state holds neither lr nor eps: rms_stats takes the optimizer's.
      stats = optax_rmsprop.rms_stats(optimizer, learning_rate=config.learning_rate,
                                      eps=EPS, quantiles=_common.STAT_QUANTILES)
      return state, (losses, stats)
    return jax.lax.scan(logged, state, windows)

  # Held-out text as 16 contiguous streams, read window by window with the
  # state carried over, so each character sees its whole stream's history.
  streams = 16
  width = (len(test) - 1) // streams // config.seq_len * config.seq_len
  test_in = test[: streams * width].reshape(streams, width)
  test_out = test[1: streams * width + 1].reshape(streams, width)

  @jax.jit
  def test_bits_per_char(state):
    xs = test_in.reshape(streams, -1, config.seq_len).transpose(1, 0, 2)
    ys = test_out.reshape(streams, -1, config.seq_len).transpose(1, 0, 2)
    def window(carry, xy):
      # The state rides in the carry: nnx.RNN's own scan needs its params
      # traced at this level, not closed over from the jit.
      state, h = carry
      model, _ = nnx.merge(graphdef, state)
      logits, h = model(xy[0], h)
      return (state, h), nats(logits, xy[1])
    h0 = jnp.zeros((streams, config.hidden))
    _, losses = jax.lax.scan(window, (state, h0), (xs, ys))
    return losses.mean() / math.log(2)

  # The unigram entropy of held-out text under training frequencies: what
  # a model that ignores context would score.
  freq = np.bincount(train, minlength=len(vocab)) + 1.0
  unigram_bpc = float(-np.mean(np.log2((freq / freq.sum())[test])))

  rng = np.random.default_rng(config.seed)
  history = {"train_bpc": [], "test_bpc": [], "step": [], "stats": []}
  start = time.perf_counter()
  chunks = config.steps // config.eval_every
  bar = tqdm(range(chunks), desc="char GRU", disable=not config.progress)
  for chunk in bar:
    starts = rng.integers(0, len(train) - config.seq_len - 1,
                          size=(config.eval_every, config.batch_size))
    windows = train[starts[..., None] + np.arange(config.seq_len + 1)]
    windows = windows.reshape(-1, config.log_every, *windows.shape[1:])
    state, (losses, stats) = train_chunk(state, windows)
    history["stats"].append(stats)
    bpc = float(test_bits_per_char(state))
    history["train_bpc"].append(float(np.mean(losses)) / math.log(2))
    history["test_bpc"].append(bpc)
    history["step"].append((chunk + 1) * config.eval_every)
    bar.set_postfix(train_bpc=f"{history['train_bpc'][-1]:.3f}", test_bpc=f"{bpc:.3f}")
  history["wall_s"] = time.perf_counter() - start
  history["stats"] = _common.stats_history(history["stats"])
  history["stats_step"] = (np.arange(len(history["stats"]["count"])) + 1) * config.log_every
  history["stats_step"] = history["stats_step"].tolist()
  history["unigram_bpc"] = unigram_bpc
  history["initial_bpc"] = math.log2(len(vocab))  # a uniform guess
  history["chars"] = {"train": len(train), "test": len(test), "vocab": len(vocab)}

  model, _ = nnx.merge(graphdef, state)
  history["samples"] = [sample(model, vocab, prompt, 200, seed=config.seed + i)
                        for i, prompt in enumerate(("Return the ", "If the "))]
  return history


def sample(model: CharRNN, vocab, prompt: str, length: int, seed: int = 0,
           temperature: float = 0.7) -> str:
  """Continues ``prompt`` by ``length`` characters drawn from the model."""
  lookup = {c: i for i, c in enumerate(vocab)}
  tokens = jnp.array([[lookup[c] for c in prompt]])
  logits, carry = model(tokens)
  graphdef, params = nnx.split(model)

  @jax.jit
  def generate(params, carry, logits, key):
    model = nnx.merge(graphdef, params)
    def step(state, key):
      carry, logits = state
      token = jax.random.categorical(key, logits / temperature)
      x = model.embed(token)
      carry, h = model.rnn.cell(carry, x)
      return (carry, model.head(h)), token
    _, tokens = jax.lax.scan(step, (carry, logits), jax.random.split(key, length))
    return tokens

  out = generate(params, carry, logits[:, -1], jax.random.key(seed))
  return prompt + "".join(vocab[int(t)] for t in np.asarray(out)[:, 0])


def plot(histories: dict, path: str, title: str) -> str:
  """Bits per character of every seed; step-size bands of the first seed."""
  first = histories[min(histories)]
  leaves = _common.stat_leaves(first["stats"])
  fig, (ax,), leaf_axes = _common.step_size_figure(1, leaves)
  for i, (seed, h) in enumerate(sorted(histories.items())):
    ax.plot(h["step"], h["train_bpc"], "--", color=f"C{i + 1}", lw=0.8,
            label=f"seed {seed}: train" if i == 0 else None)
    ax.plot(h["step"], h["test_bpc"], "o-", ms=2.5, color=f"C{i + 1}", lw=1,
            label=f"seed {seed}: held-out")
  ax.axhline(first["unigram_bpc"], color="gray", ls=":", label="unigram baseline")
  ax.set(xlabel="step", ylabel="bits per character")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  _common.draw_step_sizes(leaf_axes, first["stats_step"], first["stats"], leaves, EPS)
  for a in leaf_axes[-3:]:
    a.set_xlabel(f"step (seed {min(histories)})", fontsize=7)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return _common.save_figure(fig, path)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=None, help="default 1500; --quick: 60")
  parser.add_argument("--learning-rate", type=float, default=Config.learning_rate)
  parser.add_argument("--hidden", type=int, default=None, help="default 192; --quick: 64")
  _common.add_seed_argument(parser)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default=None, help=f"default {_common.RESULTS_DIR}")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  quick = dict(steps=60, eval_every=20, log_every=10, hidden=64, seq_len=32,
               max_chars=60_000)
  config = Config(**(quick if args.quick else {}), learning_rate=args.learning_rate,
                  progress=not args.no_progress)
  if args.steps:
    config.steps = args.steps
  if args.hidden:
    config.hidden = args.hidden
  out = _common.output_dir(args.out, args.quick, "char_rnn_")

  histories = {}
  for seed in _common.seeds_from(args):
    h = histories[seed] = train_and_evaluate(dataclasses.replace(config, seed=seed))
    if len(histories) == 1:
      print(f"\nchar GRU (hidden {config.hidden}), {h['chars']['train']} train / "
            f"{h['chars']['test']} held-out chars, vocab {h['chars']['vocab']}: "
            f"{config.steps} steps x {config.batch_size} x {config.seq_len}")
      print(f"uniform guess: {h['initial_bpc']:.3f} bpc, unigram baseline: "
            f"{h['unigram_bpc']:.3f} bpc")
    print(f"seed {seed}: held-out bits per character {h['test_bpc'][-1]:.3f}, "
          f"{h['wall_s']:.1f} s")
    print("\n".join(_common.step_size_lines(h["stats"], h["stats_step"])))
    for s in h["samples"]:
      print("  sample: " + repr(s))
  summary = _common.summarize({s: h["test_bpc"][-1] for s, h in histories.items()},
                              higher_is_better=False)
  print(f"held-out bits per character: {_common.format_summary(summary, '{:.3f}')}")
  png = plot(histories, os.path.join(out, "char_rnn.png"),
             f"char GRU {config.hidden}, rmsprop(centered, momentum 0.9, "
             f"lr {config.learning_rate:g}), stdlib docstrings")
  _common.write_json({"summary": {"test_bpc": summary},
                      "config": dataclasses.asdict(config),
                      "seeds": {str(s): h for s, h in histories.items()}},
                     os.path.join(out, "char_rnn.json"))
  print(f"wrote {png}")
  return histories


if __name__ == "__main__":
  main()
