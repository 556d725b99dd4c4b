"""Data-parallel RMSprop over N processes on one machine, with jax.distributed.

Each process owns one CPU device and feeds its slice of every global batch;
one jitted step over the global mesh averages the gradients (XLA inserts the
all-reduce, run over gloo between processes). The optimizer is unchanged from
the single-device code: its state simply follows the replicated params.

  python examples/distributed_digits.py --processes 2 --out /tmp/dp

launches 2 worker processes on 127.0.0.1 and writes each one's final params
(``params_process<i>.npz``) and a summary (``summary.json``) to ``--out``.
``--processes 1`` is the same code on one process: the reference run.
On a cluster, start one worker per host with ``--process-id`` and a
``--coordinator`` address instead of using the launcher.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

HIDDEN = 32
TRAIN_SIZE = 1400


def load_digits_split(seed: int = 0):
  """scikit-learn's 8×8 digits (bundled, no download), scaled to [0, 1]."""
  from sklearn.datasets import load_digits

  x, y = load_digits(return_X_y=True)
  order = np.random.default_rng(seed).permutation(len(x))
  x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)
  return (x[:TRAIN_SIZE], y[:TRAIN_SIZE]), (x[TRAIN_SIZE:], y[TRAIN_SIZE:])


def global_batches(steps: int, batch_size: int, seed: int = 1) -> np.ndarray:
  """Row indices of every global batch, ``[steps, batch_size]``: the same in
  every process, so each can cut out its own slice."""
  rng = np.random.default_rng(seed)
  per_epoch = TRAIN_SIZE // batch_size
  epochs = -(-steps // per_epoch)
  idx = [
      rng.permutation(TRAIN_SIZE)[: per_epoch * batch_size].reshape(
          per_epoch, batch_size
      )
      for _ in range(epochs)
  ]
  return np.concatenate(idx)[:steps]


def init_params(key):
  import jax

  k1, k2 = jax.random.split(key)
  return {
      "w1": jax.random.normal(k1, (64, HIDDEN)) * np.sqrt(2 / 64),
      "b1": jax.numpy.zeros(HIDDEN),
      "w2": jax.random.normal(k2, (HIDDEN, 10)) * np.sqrt(1 / HIDDEN),
      "b2": jax.numpy.zeros(10),
  }


def logits_fn(params, x):
  import jax

  h = jax.nn.relu(x @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


def loss_fn(params, x, y):
  import optax

  return optax.softmax_cross_entropy_with_integer_labels(
      logits_fn(params, x), y
  ).mean()


def train(process_id, num_processes, coordinator, steps, batch_size, lr, out):
  """One worker: joins the cluster, trains, writes its copy of the params."""
  import jax

  # gloo is jax 0.10.2's default CPU collectives backend; set it explicitly,
  # since without one cross-process CPU computations fail.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if num_processes > 1:
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,
    )
  import optax
  from jax.sharding import NamedSharding, PartitionSpec as P

  import optax_rmsprop

  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  tx = optax_rmsprop.rmsprop(lr, centered=True, momentum=0.9)

  params = jax.jit(init_params, out_shardings=replicated)(jax.random.key(0))
  opt_state = jax.jit(tx.init, out_shardings=replicated)(params)

  @jax.jit
  def train_step(params, opt_state, x, y):
    # The mean runs over the global batch: XLA all-reduces the gradients.
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  (x_train, y_train), (x_test, y_test) = load_digits_split()
  per_process = batch_size // num_processes
  mine = slice(process_id * per_process, (process_id + 1) * per_process)
  losses = []
  start = time.perf_counter()
  for idx in global_batches(steps, batch_size):
    local = idx[mine]  # this process's slice of the global batch
    x = jax.make_array_from_process_local_data(
        batch_sharding, x_train[local], (batch_size, 64)
    )
    y = jax.make_array_from_process_local_data(
        batch_sharding, y_train[local], (batch_size,)
    )
    params, opt_state, loss = train_step(params, opt_state, x, y)
    losses.append(float(loss.addressable_data(0)))
  seconds = time.perf_counter() - start

  host = {k: np.asarray(v.addressable_data(0)) for k, v in params.items()}
  np.savez(os.path.join(out, f"params_process{process_id}.npz"), **host)
  if process_id == 0:
    accuracy = float(
        np.mean(np.argmax(logits_fn(host, x_test), -1) == y_test)
    )
    summary = {
        "processes": num_processes,
        "devices": jax.device_count(),
        "steps": steps,
        "global_batch": batch_size,
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "test_accuracy": accuracy,
        "train_seconds": seconds,
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
      json.dump(summary, f, indent=1)
    print(json.dumps(summary))
  if num_processes > 1:
    jax.distributed.shutdown()


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(args) -> int:
  """Starts ``args.processes`` workers on localhost and waits for them."""
  os.makedirs(args.out, exist_ok=True)
  coordinator = f"127.0.0.1:{free_port()}"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # one device per process, whatever the caller set
  common = [
      "--processes", str(args.processes),
      "--coordinator", coordinator,
      "--steps", str(args.steps),
      "--batch-size", str(args.batch_size),
      "--lr", str(args.lr),
      "--out", args.out,
  ]  # fmt: skip
  workers = [
      subprocess.Popen(
          [sys.executable, __file__, "--process-id", str(i), *common], env=env
      )
      for i in range(args.processes)
  ]
  deadline = time.monotonic() + args.timeout
  codes = []
  try:
    for w in workers:
      codes.append(w.wait(timeout=max(deadline - time.monotonic(), 1)))
  except subprocess.TimeoutExpired:
    print(f"timed out after {args.timeout} s", file=sys.stderr)
    codes.append(1)
  finally:
    for w in workers:  # only our own children, by handle
      if w.poll() is None:
        w.kill()
        w.wait()
  return max(codes)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--processes", type=int, default=2)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--lr", type=float, default=3e-4)
  parser.add_argument("--out", default="examples/results/distributed_digits")
  parser.add_argument("--timeout", type=float, default=120)
  parser.add_argument(
      "--process-id", type=int, help="run as this worker (set by the launcher)"
  )
  parser.add_argument("--coordinator", help="host:port of process 0")
  args = parser.parse_args(argv)
  if args.batch_size % args.processes:
    parser.error("--batch-size must be divisible by --processes")
  if args.process_id is None:
    return launch(args)
  train(
      args.process_id,
      args.processes,
      args.coordinator,
      args.steps,
      args.batch_size,
      args.lr,
      args.out,
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
