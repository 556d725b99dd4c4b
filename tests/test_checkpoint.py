"""Orbax checkpoints of params + optimizer state, mid-training.

Save at step 4, restore into the abstract target ``jax.eval_shape`` gives,
continue to step 8: the trajectory must be bit-identical to the uninterrupted
run (the reference), and the state must come back with its own types,
``None`` fields of disabled features included. The sharded variant runs on
8 simulated devices in a subprocess (``_sharding_worker.py checkpoint``).
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import optax_rmsprop

import _sharding_worker as worker

STEPS, SAVE_AT = 8, 4
SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 0.02, 2, STEPS)

CONFIGS = {
    # mu=None and count=None: the disabled-feature fields must round-trip.
    "plain": lambda: optax_rmsprop.rmsprop(0.01),
    "centered_momentum_bias_correction_schedule": lambda: optax_rmsprop.rmsprop(
        SCHEDULE, centered=True, momentum=0.9, bias_correction=True
    ),
    "inject_hyperparams": lambda: optax.inject_hyperparams(
        optax_rmsprop.rmsprop
    )(learning_rate=SCHEDULE, centered=True, momentum=0.9,
      bias_correction=True),
    "bfloat16_state_decoupled_decay_lr_out": lambda: optax_rmsprop.rmsprop(
        SCHEDULE,
        momentum=0.5,
        lr_in_momentum=False,
        decoupled_weight_decay=0.1,
        nu_dtype=jnp.bfloat16,
        momentum_dtype=jnp.bfloat16,
    ),
}


def problem(seed=0):
  rng = np.random.default_rng(seed)
  params = {
      "dense": {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=3)},
      "scale": rng.normal(size=()),
  }
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape),
                                              jnp.float32), params)
           for _ in range(STEPS)]
  return params, grads


def assert_bit_identical(actual, desired):
  assert jax.tree.structure(actual) == jax.tree.structure(desired)
  for a, d in zip(jax.tree.leaves(actual), jax.tree.leaves(desired)):
    assert a.dtype == d.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(d))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resume_from_checkpoint_is_bit_identical(name, tmp_path):
  tx = CONFIGS[name]()
  params, grads = problem()
  step = worker.step_fn(tx)  # jitted: updates and applies
  uninterrupted = worker.run(step, params, tx.init(params), grads)
  saved = worker.run(step, params, tx.init(params), grads[:SAVE_AT])

  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", {"params": saved[0],
                                        "opt_state": saved[1]})
  checkpointer.wait_until_finished()
  target = jax.eval_shape(lambda p: {"params": p, "opt_state": tx.init(p)},
                          params)
  restored = checkpointer.restore(tmp_path / "ckpt", target)

  # Same NamedTuple types and None fields as tx.init's, same bits.
  assert_bit_identical((restored["params"], restored["opt_state"]), saved)
  assert str(jax.tree.structure(restored["opt_state"])) == str(
      jax.tree.structure(saved[1])
  )
  resumed = worker.run(step, restored["params"], restored["opt_state"],
                       grads[SAVE_AT:])
  assert_bit_identical(resumed, uninterrupted)


@pytest.mark.parametrize(
    "kwargs,state_type",
    [
        ({}, optax.ScaleByRmsState),
        ({"bias_correction": True}, type(optax.scale_by_rms(bias_correction=True).init({}))),
        ({"centered": True}, optax.ScaleByRStdDevState),
        (
            {"centered": True, "bias_correction": True},
            type(optax.scale_by_stddev(bias_correction=True).init({})),
        ),
    ],
)
def test_state_class_round_trips(tmp_path, kwargs, state_type):
  tx = optax_rmsprop.scale_by_rms(**kwargs)
  params, grads = problem()
  _, state = jax.jit(tx.update)(grads[0], tx.init(params))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(tmp_path / "ckpt",
                                  jax.eval_shape(tx.init, params))
  assert type(restored) is state_type
  assert_bit_identical(restored, state)


def test_checkpoint_manager_resumes_the_latest_step(tmp_path):
  tx = CONFIGS["centered_momentum_bias_correction_schedule"]()
  params, grads = problem(seed=1)
  step = worker.step_fn(tx)
  uninterrupted = worker.run(step, params, tx.init(params), grads)

  options = ocp.CheckpointManagerOptions(max_to_keep=2)
  with ocp.CheckpointManager(tmp_path / "run", options=options) as manager:
    p, s = params, tx.init(params)
    for t, g in enumerate(grads[:SAVE_AT], start=1):
      p, s = step(p, s, g)
      manager.save(t, args=ocp.args.Composite(
          params=ocp.args.StandardSave(p), opt_state=ocp.args.StandardSave(s)))
    manager.wait_until_finished()

  # A fresh process would do exactly this: a new manager, the latest step.
  with ocp.CheckpointManager(tmp_path / "run", options=options) as manager:
    latest = manager.latest_step()
    assert latest == SAVE_AT and len(manager.all_steps()) == 2
    abstract_params = jax.eval_shape(lambda: params)
    restored = manager.restore(latest, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params),
        opt_state=ocp.args.StandardRestore(
            jax.eval_shape(tx.init, abstract_params))))
  resumed = worker.run(step, restored["params"], restored["opt_state"],
                       grads[latest:])
  assert_bit_identical(resumed, uninterrupted)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  )
  directory = tmp_path_factory.mktemp("sharded")
  proc = subprocess.run(
      [sys.executable, worker.__file__, "checkpoint", str(directory)],
      env=env, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("JSON:")][-1]
  return json.loads(line[len("JSON:"):])


def test_sharded_state_restores_with_its_shardings(sharded):
  assert sharded["restored_structure_equal"]
  assert sharded["restored_equals_saved_bitwise"]
  assert sharded["restored_layout"] == sharded["saved_layout"]
  assert sharded["restored_state_layout"] == sharded["expected_state_layout"]
  # Not trivially replicated: the mesh axes appear in the restored layout.
  assert any("fsdp" in spec for spec in sharded["restored_layout"])


def test_sharded_resume_is_bit_identical(sharded):
  assert sharded["resumed_equals_uninterrupted_bitwise"]
  assert sharded["resumed_vs_uninterrupted_max_abs"] == 0.0
  assert sharded["final_state_layout"] == sharded["expected_state_layout"]
