"""Command line shared by ``digits_mlp.py`` and ``digits_cnn.py``."""

from __future__ import annotations

import argparse
import os

import _common
from digits import train


def sweep_title(model: str, epochs: int, config: train.Config) -> str:
  seeds = ", ".join(map(str, config.sweep_seeds))
  return (f"Digits {model.upper()} (Flax NNX), {epochs} epochs, batch "
          f"{config.batch_size}: the lr sweep on seed {seeds} (validation split)")


def main(model: str, default_epochs: int, quick_epochs: int, argv=None) -> dict:
  parser = argparse.ArgumentParser(
      description=f"Digits {model.upper()} (Flax NNX): optax_rmsprop's RMSprop "
      "variants against SGD and Adam, each at its best lr from one sweep.")
  parser.add_argument("--epochs", type=int, default=None,
                      help=f"epochs per run (default {default_epochs}; "
                      f"--quick: {quick_epochs})")
  parser.add_argument("--optimizers", nargs="+", default=list(_common.OPTIMIZERS),
                      choices=list(_common.OPTIMIZERS))
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--lr-multipliers", type=float, nargs="+", default=None,
                      help="the sweep: each optimizer's usual lr times these "
                      "(default 0.1 0.316 1 3.16 10; --quick: 1, no sweep)")
  _common.add_seed_argument(parser)
  parser.add_argument("--sweep-seeds", type=int, nargs="+", default=[0],
                      help="seeds of the sweep's runs (default: 0)")
  parser.add_argument("--quick", action="store_true",
                      help="CI mode: a few epochs, one seed, no sweep; output "
                      "to a temp dir unless --out")
  parser.add_argument("--out", default=None,
                      help=f"directory for the plots and JSON (default {_common.RESULTS_DIR})")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)

  epochs = args.epochs or (quick_epochs if args.quick else default_epochs)
  multipliers = args.lr_multipliers or ((1.0,) if args.quick else train.LR_MULTIPLIERS)
  out = _common.output_dir(args.out, args.quick, "digits_")
  config = train.Config(model=model, optimizers=tuple(args.optimizers),
                        epochs=epochs, batch_size=args.batch_size,
                        lr_multipliers=tuple(multipliers),
                        seeds=tuple(_common.seeds_from(args)),
                        sweep_seeds=tuple(args.sweep_seeds),
                        progress=not args.no_progress)
  results = train.train_and_evaluate(config)

  seeds = ", ".join(map(str, config.seeds))
  print(f"\ndigits {model}: {epochs} epochs x {config.batch_size} batch, seeds {seeds}; "
        f"lr sweep: usual lr x {', '.join(f'{m:.3g}' for m in multipliers)}, "
        f"on seed {', '.join(map(str, config.sweep_seeds))}, chosen by validation accuracy "
        f"({config.val_fraction:.0%} of the training split)")
  print(f"{'optimizer':>17}  {'usual lr':>8}  {'best lr':>8}  {'val acc':>7}  "
        f"{'train loss':>10}  test accuracy: mean ± std (worst)")
  summaries = {}
  for name, r in results.items():
    runs = r["seeds"].values()
    summary = summaries[name] = _common.summarize(
        {s: h["test_accuracy"][-1] for s, h in r["seeds"].items()}, higher_is_better=True)
    summary["best_lr"] = r["sweep"]["best_lr"]
    summary["train_loss"] = sum(h["train_loss"][-1] for h in runs) / len(runs)
    val = r["sweep"].get("val_accuracy")
    best = r["sweep"]["lrs"].index(r["sweep"]["best_lr"])
    val_acc = f"{sum(val[best]) / len(val[best]):7.4f}" if val else f"{'-':>7}"
    print(f"{name:>17}  {_common.OPTIMIZERS[name][1]:8.1e}  {r['sweep']['best_lr']:8.1e}  "
          f"{val_acc}  {summary['train_loss']:10.2e}  {_common.format_summary(summary)}")
  first = next(iter(results))
  print(f"test accuracy ({first}): {_common.format_summary(summaries[first])}")

  stem = f"digits_{model}"
  labelled = {f"{n} (lr {r['sweep']['best_lr']:.2g})": list(r["seeds"].values())
              for n, r in results.items()}
  title = (f"Digits {model.upper()} (Flax NNX), {epochs} epochs, batch "
           f"{config.batch_size}, seeds {seeds}")
  pngs = [_common.plot_histories(labelled, os.path.join(out, stem + ".png"),
                                 title + ": each optimizer at its chosen lr")]
  if len(multipliers) > 1:
    pngs.append(_common.plot_sweep({n: r["sweep"] for n, r in results.items()},
                                   os.path.join(out, stem + "_sweep.png"),
                                   sweep_title(model, epochs, config)))
  _common.write_json({"summary": summaries, "results": results,
                      "config": {"epochs": epochs, "batch_size": config.batch_size,
                                 "lr_multipliers": list(multipliers),
                                 "seeds": list(config.seeds),
                                 "sweep_seeds": list(config.sweep_seeds)}},
                     os.path.join(out, stem + ".json"))
  for png in pngs:
    print(f"wrote {png}")
  return results
