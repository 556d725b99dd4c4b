"""A training process that test_crash_resume.py kills and restarts.

``python _resume_worker.py DIR STEPS`` trains each config of ``CONFIGS`` in
turn for STEPS updates, saving params, optimizer state, a digest of both and
a large ballast array (so that a write takes a while) with an asynchronous
Orbax ``CheckpointManager`` after every update; restarted, it resumes each
config from its latest checkpoint, checks the restored bits against the
digest saved with them, and at the end of a config compares the resumed run
with an uninterrupted one computed in the same process. Flushed stdout lines
tell the parent what happens::

  RESUMED <config> <step>   restored <step> (0: nothing to restore)
  STEP <config> <step>      update <step> computed, not saved yet
  SAVING <config> <step>    manager.save returned: the write is in flight
  DONE <config> <0|1>       1: bit-identical to the uninterrupted run

The parent sets ``XLA_FLAGS`` for 8 host devices: the sharded config runs on
a (4, 2) mesh, the others on one device. Importing this file is inert.
"""

from __future__ import annotations

import hashlib
import os
import sys

CONFIGS = ("float32", "bfloat16_state", "sharded")
BALLAST_ELEMENTS = 4 << 20  # 16 MiB of float32 per checkpoint


def make_tx(name):
  import jax.numpy as jnp
  import optax
  import optax_rmsprop

  schedule = optax.cosine_decay_schedule(0.02, 64)
  if name == "float32":
    return optax.inject_hyperparams(optax_rmsprop.rmsprop)(
        learning_rate=schedule, centered=True, momentum=0.9,
        bias_correction=True,
    )
  if name == "bfloat16_state":
    return optax_rmsprop.rmsprop(
        schedule, momentum=0.5, lr_in_momentum=False,
        decoupled_weight_decay=0.1, nu_dtype=jnp.bfloat16,
        momentum_dtype=jnp.bfloat16,
    )
  return optax_rmsprop.rmsprop(0.01, centered=True, momentum=0.9)


def initial_params(name):
  import numpy as np

  import _sharding_worker as layout

  rng = np.random.default_rng(CONFIGS.index(name))
  return {
      k: rng.normal(size=s).astype(np.float32)
      for k, s in layout.SHAPES.items()
  }


def noise(name, step, params):
  """The data of update ``step`` (from 1): a function of the step only."""
  import numpy as np

  rng = np.random.default_rng([CONFIGS.index(name), step])
  return {k: rng.normal(size=p.shape).astype(np.float32)
          for k, p in params.items()}


class Problem:
  """Params, placement and the jitted step of one config."""

  def __init__(self, name):
    import jax
    import optax

    import _sharding_worker as layout

    self.name = name
    self.tx = make_tx(name)
    self.mesh = layout.make_mesh(explicit=False) if name == "sharded" else None
    tx = self.tx

    @jax.jit
    def step(params, state, noise):
      # The gradient depends on the params: a state error would compound.
      grads = jax.tree.map(lambda p, n: 0.5 * jax.numpy.tanh(p) + n,
                           params, noise)
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    self.step_fn = step

  def place(self, tree):
    import jax

    import _sharding_worker as layout

    if self.mesh is None:
      return jax.tree.map(jax.numpy.asarray, tree)
    return layout.place(tree, self.mesh)

  def init(self):
    import optax_rmsprop

    params = self.place(initial_params(self.name))
    if self.mesh is None:
      return params, self.tx.init(params)
    return params, optax_rmsprop.tools.init_sharded(self.tx, params)

  def abstract(self, params):
    """Restore targets: shapes and dtypes, and the shardings to restore to."""
    import jax
    import optax_rmsprop

    state = jax.eval_shape(self.tx.init, params)
    shardings = optax_rmsprop.tools.state_shardings(self.tx, params)
    struct = lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
    return (
        jax.tree.map(lambda p: struct(p, p.sharding), params),
        jax.tree.map(struct, state, shardings),
    )

  def step(self, params, state, step):
    return self.step_fn(params, state, self.place(noise(self.name, step,
                                                        params)))


def digest(tree):
  """sha256 of every leaf's dtype, shape and bytes, in tree order."""
  import jax
  import numpy as np

  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    a = np.asarray(leaf)
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def say(*words):
  print(*words, flush=True)


def train(problem, directory, steps, ballast):
  import orbax.checkpoint as ocp

  options = ocp.CheckpointManagerOptions(
      max_to_keep=2, enable_async_checkpointing=True
  )
  with ocp.CheckpointManager(directory, options=options) as manager:
    params, state = problem.init()
    start = manager.latest_step() or 0
    if start:
      abstract_params, abstract_state = problem.abstract(params)
      restored = manager.restore(start, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(abstract_params),
          opt_state=ocp.args.StandardRestore(abstract_state),
          meta=ocp.args.JsonRestore(),
      ))
      params, state = restored["params"], restored["opt_state"]
      meta = restored["meta"]
      if meta["step"] != start or meta["digest"] != digest((params, state)):
        say("CORRUPT", problem.name, start)
        sys.exit(3)
    say("RESUMED", problem.name, start)
    for t in range(start + 1, steps + 1):
      params, state = problem.step(params, state, t)
      say("STEP", problem.name, t)
      manager.save(t, args=ocp.args.Composite(
          params=ocp.args.StandardSave(params),
          opt_state=ocp.args.StandardSave(state),
          meta=ocp.args.JsonSave({"step": t, "digest": digest((params,
                                                               state))}),
          ballast=ocp.args.StandardSave({"bytes": ballast}),
      ))
      say("SAVING", problem.name, t)
    manager.wait_until_finished()
  return params, state


def main(directory, steps):
  import jax.numpy as jnp
  import numpy as np

  ballast = jnp.asarray(
      np.random.default_rng(7).random(BALLAST_ELEMENTS, np.float32)
  )
  for name in CONFIGS:
    done = os.path.join(directory, f"{name}.done")
    if os.path.exists(done):
      continue
    problem = Problem(name)
    resumed = train(problem, os.path.join(directory, name), steps, ballast)
    params, state = problem.init()
    for t in range(1, steps + 1):
      params, state = problem.step(params, state, t)
    same = int(digest(resumed) == digest((params, state)))
    with open(done, "w") as f:
      f.write(str(same))
    say("DONE", name, same)


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  main(sys.argv[1], int(sys.argv[2]))
