"""Command line shared by ``digits_mlp.py`` and ``digits_cnn.py``."""

from __future__ import annotations

import argparse
import os

import _common
from digits import train


def main(model: str, default_epochs: int, quick_epochs: int, argv=None) -> dict:
  parser = argparse.ArgumentParser(
      description=f"Digits {model.upper()} (Flax NNX): optax_rmsprop's RMSprop "
      "variants against SGD and Adam on the same budget.")
  parser.add_argument("--epochs", type=int, default=None,
                      help=f"epochs per optimizer (default {default_epochs}; "
                      f"--quick: {quick_epochs})")
  parser.add_argument("--optimizers", nargs="+", default=list(_common.OPTIMIZERS),
                      choices=list(_common.OPTIMIZERS))
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--lr-scale", type=float, default=1.0,
                      help="multiplies every optimizer's usual learning rate")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quick", action="store_true",
                      help="CI mode: a few epochs; output to a temp dir unless --out")
  parser.add_argument("--out", default=None,
                      help=f"directory for the plot and JSON (default {_common.RESULTS_DIR})")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)

  epochs = args.epochs or (quick_epochs if args.quick else default_epochs)
  out = _common.output_dir(args.out, args.quick, "digits_")
  config = train.Config(model=model, optimizers=tuple(args.optimizers),
                        epochs=epochs, batch_size=args.batch_size,
                        lr_scale=args.lr_scale, seed=args.seed,
                        progress=not args.no_progress)
  histories = train.train_and_evaluate(config)

  print(f"\ndigits {model}: {epochs} epochs x {config.batch_size} batch, "
        f"seed {config.seed}")
  print(f"{'optimizer':>24}  {'test acc':>8}  {'test loss':>9}  {'steps':>5}  {'wall s':>6}")
  for name, h in histories.items():
    print(f"{_common.optimizer_label(name, args.lr_scale):>24}  "
          f"{h['test_accuracy'][-1]:8.4f}  {h['test_loss'][-1]:9.4f}  "
          f"{h['steps']:5d}  {h['wall_s']:6.1f}")
  first = next(iter(histories))
  print(f"test accuracy ({first}): {histories[first]['test_accuracy'][-1]:.4f}")

  stem = f"digits_{model}"
  labelled = {_common.optimizer_label(n, args.lr_scale): h for n, h in histories.items()}
  png = _common.plot_histories(
      labelled, os.path.join(out, stem + ".png"),
      f"Digits {model.upper()} (Flax NNX), {epochs} epochs, batch {config.batch_size}")
  summary = {n: {k: v for k, v in h.items() if k != "step_loss"}
             for n, h in histories.items()}
  _common.write_json(summary, os.path.join(out, stem + ".json"))
  print(f"wrote {png}")
  return histories
