"""The examples learn: each runs in its quick mode and shows a real signal.

Each test trains the example's own code (imported from ``examples/``) for a
few seconds and checks the loss falls by a stated fraction and the held-out
metric beats chance by a margin; the full runs are in examples/README.md.
"""

import math
import os
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
sys.path.insert(0, EXAMPLES)

pytest.importorskip("flax")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import _common  # noqa: E402  (examples/_common.py)


def _assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 5_000  # a drawn figure, not an empty canvas


def test_digits_mlp_quick_sweeps_learns_and_plots(tmp_path, capsys):
  """--quick with a two-point lr sweep: the usual lr and one 100x smaller,
  which barely moves in 3 epochs. The sweep must pick the usual one by its
  validation accuracy, and the final run at it must learn."""
  from digits import cli

  results = cli.main(
      "mlp", default_epochs=30, quick_epochs=3,
      argv=["--quick", "--no-progress", "--out", str(tmp_path),
            "--optimizers", "rmsprop", "sgd", "--lr-multipliers", "0.01", "1"])
  for name, r in results.items():
    usual = _common.OPTIMIZERS[name][1]
    sweep = r["sweep"]
    assert sweep["lrs"] == pytest.approx([usual / 100, usual])
    assert sweep["best_lr"] == usual, name
    small, best = (sum(a) / len(a) for a in sweep["val_accuracy"])
    assert best > small + 0.1, name
    h = r["seeds"][0]  # --quick: one seed
    # From ln(10) = 2.30 at init to under a quarter of it in 3 epochs, and
    # far above the 10% of chance on the held-out quarter of the data.
    assert h["first_step_loss"] > 0.8 * math.log(10), name
    assert h["train_loss"][-1] < 0.25 * h["first_step_loss"], name
    assert h["test_accuracy"][-1] > 0.85, name
  assert "test accuracy (rmsprop): 0." in capsys.readouterr().out
  _assert_png(tmp_path / "digits_mlp.png")
  _assert_png(tmp_path / "digits_mlp_sweep.png")
  assert (tmp_path / "digits_mlp.json").exists()


def test_digits_cnn_quick_learns(tmp_path):
  from digits import cli

  results = cli.main(
      "cnn", default_epochs=30, quick_epochs=2,
      argv=["--quick", "--no-progress", "--out", str(tmp_path),
            "--optimizers", "rmsprop_momentum"])
  h = results["rmsprop_momentum"]["seeds"][0]
  assert h["train_loss"][-1] < 0.25 * h["first_step_loss"]
  assert h["test_accuracy"][-1] > 0.85
  _assert_png(tmp_path / "digits_cnn.png")


def test_linen_trainstate_quick_learns(tmp_path):
  import linen_trainstate

  h = linen_trainstate.main(["--quick", "--no-progress", "--out", str(tmp_path)])[0]
  # Warmup from lr 0: the first step leaves the loss where init put it.
  assert h["lr"][0] == 0.0
  assert max(h["lr"]) == pytest.approx(linen_trainstate.Config.peak_lr)
  assert h["train_loss"][-1] < 0.25 * h["step_loss"][0]
  assert h["test_accuracy"][-1] > 0.85
  _assert_png(tmp_path / "linen_trainstate.png")


def _assert_step_sizes_logged(h, leaves, lr, eps):
  """The rms_stats history: per leaf, quantile bands in order, all at most
  lr / sqrt(eps) (the step of an element with v = 0)."""
  stats = h["stats"]
  assert len(stats["learning_rate"]) == len(h["stats_step"]) > 1
  assert stats["learning_rate"][0] == pytest.approx(lr)  # constant or schedule(0)
  for leaf in leaves:
    low, mid, high = (stats[f"step_size/{leaf}/{q}"] for q in ("p5", "p50", "p95"))
    assert all(0 < a <= b <= c for a, b, c in zip(low, mid, high)), leaf
    caps = [r / math.sqrt(eps) for r in stats["learning_rate"]]
    assert all(m <= c * (1 + 1e-6) for m, c in zip(stats[f"step_size/{leaf}/max"], caps))


def test_char_rnn_quick_beats_unigram(tmp_path):
  import char_rnn

  h = char_rnn.main(["--quick", "--no-progress", "--out", str(tmp_path)])[0]
  # In 60 steps the GRU must use context: held-out bits per character fall
  # over training and end below what character frequencies alone give
  # (4.9 bpc on the quick text; a uniform guess is 6.5).
  assert h["test_bpc"][-1] < h["test_bpc"][0]
  assert h["test_bpc"][-1] < h["unigram_bpc"] - 0.15
  assert h["train_bpc"][-1] < h["train_bpc"][0]
  assert all(s.startswith(p) and len(s) == len(p) + 200
             for s, p in zip(h["samples"], ("Return the ", "If the ")))
  _assert_step_sizes_logged(h, ["embed/embedding", "rnn/cell/dense_h/kernel"],
                            lr=char_rnn.Config.learning_rate, eps=char_rnn.EPS)
  # The optimizer's own step counter, read by rms_stats from nnx.Optimizer.
  assert h["stats"]["count"] == h["stats_step"]
  _assert_png(tmp_path / "char_rnn.png")


def test_dqn_cartpole_quick_learns(tmp_path):
  pytest.importorskip("gymnax")
  import dqn_cartpole

  h = dqn_cartpole.main(["--quick", "--no-progress", "--out", str(tmp_path)])[0]
  # A random policy lasts about 22 steps on CartPole. In the quick budget
  # (48k env steps; 135-342 on seeds 0-3) the greedy policy must at least
  # triple that, and the training episodes must get longer.
  assert h["final_mean_return"] > 66.0
  returns = h["episode_returns"]
  assert sum(returns[-100:]) / 100 > 2 * sum(returns[:100]) / 100
  _assert_step_sizes_logged(h, ["layer1/kernel", "head/kernel"], lr=2e-3,
                            eps=dqn_cartpole.Config.eps)
  _assert_png(tmp_path / "dqn_cartpole.png")
