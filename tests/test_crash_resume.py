"""Training killed with SIGKILL, restarted, resumed: bit-identical at the end.

``_resume_worker.py`` trains three configs (float32 with injected
hyperparameters, a bfloat16 state, one sharded over 8 simulated devices)
with an asynchronous Orbax ``CheckpointManager`` saving after every update.
This test kills it at random points (right after a save starts, while its
16 MiB write is in flight; after an update, before its save; right after a
restore), restarts it, and checks that every restart resumed from the
latest *complete* checkpoint on disk (never from a partial one: Orbax writes
to a temporary directory and renames it when complete, and the worker
checks the restored bits against a digest saved with them) and that each
config ends bit-identical to an uninterrupted run.
"""

import os
import pathlib
import random
import signal
import subprocess
import sys

import pytest

import _resume_worker as worker

pytest.importorskip("orbax.checkpoint")  # not in the minimal-versions run

STEPS = 6


def checkpoints(directory: pathlib.Path):
  """(complete steps, partial entries) of a CheckpointManager directory."""
  if not directory.exists():
    return [], []
  names = [p.name for p in directory.iterdir()]
  complete = sorted(int(n) for n in names if n.isdigit())
  partial = [n for n in names if not n.isdigit()]
  return complete, partial


def start(directory, steps):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  )
  return subprocess.Popen(
      [sys.executable, worker.__file__, str(directory), str(steps)],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
  )


def train_with_kills(directory, kills, seed, steps, spread):
  """Runs the worker to the end, killing it ``kills`` times (each after
  fewer than ``spread`` events of the chosen kind); returns a log of what
  happened."""
  rng = random.Random(seed)
  log = {"kills": [], "resumes": [], "mid_save_kills": 0}
  while True:
    killing = len(log["kills"]) < kills
    # The event to kill at: its kind, and how many such events to let pass.
    kind = rng.choice(["SAVING", "SAVING", "SAVING", "STEP", "RESUMED"])
    skip = rng.randrange(len(worker.CONFIGS) if kind == "RESUMED" else spread)
    proc = start(directory, steps)
    killed = False
    for line in proc.stdout:
      words = line.split()
      if words and words[0] == "RESUMED":
        name, step = words[1], int(words[2])
        complete, partial = checkpoints(directory / name)
        log["resumes"].append((name, step, complete, partial))
        # The latest complete checkpoint, never a partial one.
        assert step == (complete[-1] if complete else 0), (line, complete,
                                                            partial)
      if killing and words and words[0] == kind:
        if skip:
          skip -= 1
          continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = True
        name = words[1]
        complete, partial = checkpoints(directory / name)
        log["kills"].append((line.strip(), complete, partial))
        log["mid_save_kills"] += bool(partial)
        break
    if not killed:
      proc.wait()
      stderr = proc.stderr.read()
      assert proc.returncode == 0, stderr[-3000:]
      proc.stderr.close()
      return log
    proc.stdout.close()
    proc.stderr.close()


def check(tmp_path, kills, seed, steps=STEPS, spread=8):
  """Trains to the end with kills, in a fresh directory each time a run
  ends before ``kills`` kills; every run must end bit-identical."""
  total, mid_save, runs = 0, 0, 0
  while total < kills:
    directory = tmp_path / f"run{runs}"
    directory.mkdir()
    log = train_with_kills(directory, kills - total, seed + 100 * runs,
                           steps, spread)
    runs += 1
    print(f"\nrun {runs}: {len(log['kills'])} SIGKILLs,"
          f" {log['mid_save_kills']} of them leaving a partial checkpoint:")
    for line, complete, partial in log["kills"]:
      print(f"  killed after {line!r}: complete {complete}, partial {partial}")
    print("restarts resumed at:")
    for name, step, complete, partial in log["resumes"]:
      print(f"  {name} step {step} (complete {complete}, partial {partial})")
    for name in worker.CONFIGS:
      assert (directory / f"{name}.done").read_text() == "1", name
    total += len(log["kills"])
    mid_save += log["mid_save_kills"]
  print(f"{total} SIGKILLs in {runs} run(s), {mid_save} mid-save; every"
        " restart resumed from the latest complete checkpoint and every"
        " config ended bit-identical")
  # At least one restart found a partial checkpoint beside the complete
  # ones and resumed from the complete one.
  assert mid_save >= 1


def test_sigkill_resume_is_bit_identical(tmp_path):
  check(tmp_path, kills=4, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_sigkill_resume_is_bit_identical_many_kills(tmp_path, seed):
  check(tmp_path, kills=12, seed=seed + 1, steps=16, spread=4)
