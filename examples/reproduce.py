"""Runs the examples in their default mode and regenerates examples/README.md's tables.

    python examples/reproduce.py                  # every example (about an hour on 2 CPU cores)
    python examples/reproduce.py char_rnn         # some of them
    python examples/reproduce.py --tables-only    # just the tables, from results/*.json

Each run's standard output is saved as ``results/<example>.txt``, a transcript
that ends with the process's wall-clock and CPU time. The tables of
examples/README.md between ``<!-- begin: NAME -->`` and ``<!-- end: NAME -->``
are then rewritten from ``results/*.json``, the scripts' own summaries, so
every number in them was printed by a script.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

EXAMPLES = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(EXAMPLES, "results")
README = os.path.join(EXAMPLES, "README.md")
SCRIPTS = ("digits_mlp", "digits_cnn", "linen_trainstate", "char_rnn", "dqn_cartpole")


def run(name: str) -> None:
  """Runs ``examples/<name>.py --no-progress`` and writes its transcript."""
  command = ["python", f"examples/{name}.py", "--no-progress"]
  before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
  out = subprocess.run([sys.executable] + command[1:], cwd=os.path.dirname(EXAMPLES),
                       stdout=subprocess.PIPE, text=True, check=True).stdout
  wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
  load = " ".join(f"{x:.2f}" for x in os.getloadavg())
  text = (f"$ {' '.join(command)}\n{out}"
          f"process wall-clock: {wall:.1f} s (user {after.ru_utime - before.ru_utime:.1f} s, "
          f"sys {after.ru_stime - before.ru_stime:.1f} s)\nload average at end: {load}\n")
  with open(os.path.join(RESULTS, f"{name}.txt"), "w") as f:
    f.write(text)
  print(text)


def load(name: str) -> dict:
  with open(os.path.join(RESULTS, f"{name}.json")) as f:
    return json.load(f)


def wall_clock(name: str) -> str:
  """The process wall-clock recorded at the end of ``results/<name>.txt``."""
  with open(os.path.join(RESULTS, f"{name}.txt")) as f:
    match = re.search(r"process wall-clock: ([0-9.]+) s", f.read())
  return f"{float(match.group(1)):.0f} s" if match else "?"


def percent(s: dict) -> str:
  """``97.33 ± 0.21% (worst 97.11%, seed 2)`` from a summary of accuracies."""
  return (f"**{100 * s['mean']:.2f}** ± {100 * s['std']:.2f}% "
          f"(worst {100 * s['worst']:.2f}%, seed {s['worst_seed']})")


def plain(s: dict, fmt: str) -> str:
  return (f"**{fmt.format(s['mean'])}** ± {fmt.format(s['std'])} "
          f"(worst {fmt.format(s['worst'])}, seed {s['worst_seed']})")


def results_table() -> str:
  mlp, cnn = load("digits_mlp"), load("digits_cnn")
  linen, rnn, dqn = load("linen_trainstate"), load("char_rnn"), load("dqn_cartpole")
  rnn_seed = next(iter(rnn["seeds"].values()))
  dqn_config = dqn["config"]
  returns = dqn["summary"]["greedy_return"]
  solved = sum(h["solved"] for h in dqn["seeds"].values())
  first_mlp = next(iter(mlp["results"].values()))
  steps = next(iter(first_mlp["seeds"].values()))["steps"]
  rows = [
      ("`digits_mlp.py`", "NNX MLP 64-256-256-10, digits 8×8 (1347 train / 450 test)",
       f"`rmsprop` at its swept lr {mlp['summary']['rmsprop']['best_lr']:.2g} "
       "(+ 4 others, same sweep)", "test accuracy " + percent(mlp["summary"]["rmsprop"]),
       f"{steps}", wall_clock("digits_mlp")),
      ("`digits_cnn.py`", "NNX CNN (2 convs, max pool), digits 8×8",
       f"`rmsprop` at its swept lr {cnn['summary']['rmsprop']['best_lr']:.2g} (+ 4 others)",
       "test accuracy " + percent(cnn["summary"]["rmsprop"]), f"{steps}",
       wall_clock("digits_cnn")),
      ("`linen_trainstate.py`", "Linen MLP in a `TrainState`, digits 8×8",
       "`clip_by_global_norm(1)` + `rmsprop(warmup_cosine, centered=True)`",
       "test accuracy " + percent(linen["summary"]["test_accuracy"]), f"{steps}",
       wall_clock("linen_trainstate")),
      ("`char_rnn.py`", f"NNX GRU {rnn['config']['hidden']} (`nnx.RNN(nnx.GRUCell)`), "
       "stdlib docstrings, 158k/18k chars",
       "`rmsprop(2e-3, decay=0.95, eps=1e-4, centered=True, momentum=0.9)` + clipping "
       "(Graves 2013)", "held-out " + plain(rnn["summary"]["test_bpc"], "{:.3f}")
       + f" bits/char (unigram {rnn_seed['unigram_bpc']:.3f})",
       f"{rnn['config']['steps']}", wall_clock("char_rnn")),
      ("`dqn_cartpole.py`", "DQN, MLP 4-64-64-2, CartPole-v1 (gymnax), "
       f"{dqn_config['num_envs']} envs, {dqn_config['n_step']}-step returns",
       f"`dqn_rmsprop(linear {dqn_config['learning_rate']:g} → 0)` (Nature DQN)",
       "greedy return " + plain(returns, "{:.1f}") + f" over 100 episodes; solved "
       f"(≥ 475) on {solved} of {len(dqn['seeds'])} seeds",
       f"{dqn_config['iterations'] - dqn_config['learning_starts']} updates, "
       f"{dqn_config['iterations'] * dqn_config['num_envs'] // 1000}k env steps",
       wall_clock("dqn_cartpole")),
  ]
  lines = ["| Script | Model, data | Optimizer | Result: mean ± std over seeds 0, 1, 2 (worst) "
           "| Steps per seed | Process time, 3 seeds |", "|---|---|---|---|---|---|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def digits_table() -> str:
  mlp, cnn = load("digits_mlp"), load("digits_cnn")
  lines = ["| optimizer | sweep centre (usual lr) | MLP: chosen lr | MLP test accuracy "
           "| CNN: chosen lr | CNN test accuracy |", "|---|---|---|---|---|---|"]
  order = ("rmsprop", "rmsprop_centered", "rmsprop_momentum", "sgd", "adam")
  names = sorted(mlp["summary"], key=lambda n: (order + (n,)).index(n))
  for name in names:
    s, c = mlp["summary"][name], cnn["summary"][name]
    usual = mlp["results"][name]["sweep"]["lrs"][len(mlp["results"][name]["sweep"]["lrs"]) // 2]
    lines.append(f"| {name} | {usual:g} | {s['best_lr']:.2g} | {percent(s)} | "
                 f"{c['best_lr']:.2g} | {percent(c)} |")
  return "\n".join(lines)


def dqn_table() -> str:
  dqn = load("dqn_cartpole")
  lines = ["| seed | greedy return, 100 fresh episodes | worst episode | solved |",
           "|---|---|---|---|"]
  for seed, h in dqn["seeds"].items():
    lines.append(f"| {seed} | {h['final_mean_return']:.1f} | {min(h['final_returns']):.0f} "
                 f"| {'yes' if h['solved'] else 'no'} |")
  return "\n".join(lines)


def rewrite_readme() -> None:
  with open(README) as f:
    text = f.read()
  for name, table in (("results", results_table()), ("digits", digits_table()),
                      ("dqn", dqn_table())):
    begin, end = f"<!-- begin: {name} -->", f"<!-- end: {name} -->"
    if begin not in text:
      raise ValueError(f"{README} has no {begin} marker")
    head, rest = text.split(begin, 1)
    text = head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1]
  with open(README, "w") as f:
    f.write(text)
  print(f"rewrote the tables of {README}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("examples", nargs="*", help=f"default: all of {', '.join(SCRIPTS)}")
  parser.add_argument("--tables-only", action="store_true")
  args = parser.parse_args(argv)
  unknown = set(args.examples) - set(SCRIPTS)
  if unknown:
    parser.error(f"unknown examples {sorted(unknown)}; choose from {SCRIPTS}")
  if not args.tables_only:
    for name in args.examples or SCRIPTS:
      run(name)
  rewrite_readme()


if __name__ == "__main__":
  main()
