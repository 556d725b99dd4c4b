"""Runs on 8 simulated CPU devices; prints sharding measurements as JSON.

Started by test_sharding.py / test_checkpoint.py in a subprocess whose
``XLA_FLAGS`` forces 8 host devices (the pytest process keeps 1 device).
``python _sharding_worker.py sharding`` measures state layouts, collectives
and sharded-vs-unsharded trajectories; ``... trajectories`` only compares
the trajectories bit for bit; ``... checkpoint DIR`` saves sharded state with
Orbax mid-run, restores it and continues. Everything lives in
functions, so importing this file (pytest --doctest-modules does) is inert.
"""

from __future__ import annotations

import json
import re
import sys

# Every config of issue 6; names are what the tests parametrize over.
CONFIGS = {
    "plain": {},
    "centered_momentum": {"centered": True, "momentum": 0.9},
    "nu_bfloat16": {"nu_dtype": "bfloat16"},
    "decoupled_weight_decay": {"decoupled_weight_decay": 0.1},
    "bias_correction": {"bias_correction": True},
}
MESH_SHAPE, MESH_AXES = (4, 2), ("fsdp", "tp")
# Leaves with different PartitionSpecs: FSDP×TP, TP only, a transposed one,
# and a replicated bias.
SPECS = {
    "w_in": ("fsdp", "tp"),
    "b_in": ("tp",),
    "w_out": ("tp", "fsdp"),
    "scale": (None,),
}
SHAPES = {"w_in": (16, 8), "b_in": (8,), "w_out": (8, 12), "scale": (6,)}
COLLECTIVES = (
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "collective-permute",
    "all-to-all",
)
STEPS = 4


def make_tx(config):
  import jax.numpy as jnp
  import optax_rmsprop

  kwargs = dict(config)
  if "nu_dtype" in kwargs:
    kwargs["nu_dtype"] = jnp.dtype(kwargs["nu_dtype"])
  return optax_rmsprop.rmsprop(0.01, **kwargs)


def host_params_and_grads(steps=STEPS, seed=0):
  import numpy as np

  rng = np.random.default_rng(seed)
  params = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  grads = [
      {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
      for _ in range(steps)
  ]
  return params, grads


def make_mesh(explicit):
  import jax
  from jax.sharding import AxisType

  kind = AxisType.Explicit if explicit else AxisType.Auto
  return jax.make_mesh(
      MESH_SHAPE, MESH_AXES, axis_types=(kind,) * len(MESH_AXES)
  )


def place(tree, mesh):
  import jax
  from jax.sharding import NamedSharding, PartitionSpec

  return {
      k: jax.device_put(v, NamedSharding(mesh, PartitionSpec(*SPECS[k])))
      for k, v in tree.items()
  }


def spec_text(spec):
  """A PartitionSpec as text, trailing Nones dropped: P('tp', None) is P('tp')."""
  spec = tuple(spec)
  while spec and spec[-1] is None:
    spec = spec[:-1]
  return str(spec)


def layout(tree):
  """Each leaf's sharding as text: a PartitionSpec, or 'single-device'."""
  import jax

  def describe(x):
    sharding = x if isinstance(x, jax.sharding.Sharding) else x.sharding
    if isinstance(sharding, jax.sharding.NamedSharding):
      return spec_text(sharding.spec)
    if isinstance(sharding, jax.sharding.SingleDeviceSharding):
      return "single-device"
    return type(sharding).__name__

  return [describe(x) for x in jax.tree.leaves(tree)]


def param_shaped(tx, state):
  """The state's params-shaped subtrees (ν, μ, momentum), other leaves None."""
  import optax

  return optax.tree_map_params(
      tx, lambda x: x, state, transform_non_params=lambda _: None
  )


def count_collectives(hlo_text):
  return {
      op: len(re.findall(rf"\b{op}(-start)?\(", hlo_text)) for op in COLLECTIVES
  }


def step_fn(tx):
  import jax
  import optax

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


def run(step, params, state, grads):
  for g in grads:
    params, state = step(params, state, g)
  return params, state


def max_abs_diff(a, b):
  import jax
  import numpy as np

  diffs = jax.tree.map(
      lambda x, y: float(
          np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
      ),
      a,
      b,
  )
  return max(jax.tree.leaves(diffs), default=0.0)


def bit_equal(a, b):
  import jax
  import numpy as np

  same = jax.tree.map(
      lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a, b
  )
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
      jax.tree.leaves(same)
  )


def numpy_reference_params(config, host_params, grads):
  """Final params of the float64 NumPy reference on the same gradients."""
  import numpy as np
  import numpy_reference

  if "nu_dtype" in config:
    return None  # the reference stores ν in float64; compared elsewhere.
  ref = {}
  for k, p in host_params.items():
    opt = numpy_reference.NumpyRMSprop(
        numpy_reference.Config(learning_rate=0.01, **config), p
    )
    for g in grads:
      p = opt.step(p, g[k])
    ref[k] = p
  return ref


def measure_config(config):
  import jax
  import optax
  import optax_rmsprop

  tx = make_tx(config)
  host_params, grads = host_params_and_grads()
  out = {}

  # Auto mesh: what each way of initialising gives.
  mesh = make_mesh(explicit=False)
  params = place(host_params, mesh)
  want = optax_rmsprop.tools.state_shardings(tx, params)
  out["expected"] = layout(want)
  out["expected_param_shaped"] = layout(param_shaped(tx, want))
  # Eagerly, scalars (counts) land on the default device, as in optax: only
  # the params-shaped trees are expected to follow the params.
  out["auto_eager_init_param_shaped"] = layout(param_shaped(tx, tx.init(params)))
  out["auto_jit_init"] = layout(jax.jit(tx.init)(params))
  with jax.set_mesh(mesh):
    out["auto_set_mesh_jit_init"] = layout(jax.jit(tx.init)(params))
  state = optax_rmsprop.tools.init_sharded(tx, params)
  out["auto_init_sharded"] = layout(state)
  sharded_grads = [place(g, mesh) for g in grads]

  lowered = jax.jit(tx.update).lower(sharded_grads[0], state, params)
  compiled = lowered.compile()
  out["auto_update_collectives"] = count_collectives(compiled.as_text())
  _, out_state_shardings = compiled.output_shardings
  out["auto_update_state_layout"] = layout(out_state_shardings)

  step = step_fn(tx)
  p_sharded, s_sharded = run(step, params, state, sharded_grads)
  out["auto_final_state_layout"] = layout(s_sharded)
  out["auto_final_params_layout"] = layout(p_sharded)
  # Unsharded: the same jitted code on one device.
  p_single, s_single = run(step, host_params, tx.init(host_params), grads)
  out["sharded_equals_unsharded_bitwise"] = bit_equal(
      (p_sharded, s_sharded), (p_single, s_single)
  )
  out["sharded_vs_unsharded_max_abs"] = max_abs_diff(
      (p_sharded, s_sharded), (p_single, s_single)
  )
  ref = numpy_reference_params(config, host_params, grads)
  if ref is not None:
    out["sharded_vs_numpy_f64_max_abs"] = max_abs_diff(p_sharded, ref)

  # Explicit mesh: shardings are part of the types jit traces with.
  emesh = make_mesh(explicit=True)
  eparams = place(host_params, emesh)
  egrads = [place(g, emesh) for g in grads]
  out["explicit_eager_init_param_shaped"] = layout(
      param_shaped(tx, tx.init(eparams))
  )
  with jax.set_mesh(emesh):
    try:
      out["explicit_jit_init"] = layout(jax.jit(tx.init)(eparams))
    except Exception as e:  # a measurement: report, do not hide.
      out["explicit_jit_init"] = f"error: {type(e).__name__}: {e}"[:300]
    estate = optax_rmsprop.tools.init_sharded(tx, eparams)
    out["explicit_init_sharded"] = layout(estate)
    ecompiled = jax.jit(tx.update).lower(egrads[0], estate, eparams).compile()
    out["explicit_update_collectives"] = count_collectives(ecompiled.as_text())
    ep, es = run(step, eparams, estate, egrads)
    out["explicit_final_state_layout"] = layout(es)
    # The state's types (shape, dtype, sharding) must survive a step.
    out["explicit_state_types_stable"] = str(
        jax.tree.map(jax.typeof, estate)
    ) == str(jax.tree.map(jax.typeof, es))
  out["explicit_equals_unsharded_bitwise"] = bit_equal(
      (ep, es), (p_single, s_single)
  )

  # Optax's own rmsprop on the same auto mesh, for comparison.
  otx = optax.rmsprop(0.01, centered=True, momentum=0.9)
  out["optax_auto_eager_init"] = layout(otx.init(params))
  out["optax_auto_jit_init"] = layout(jax.jit(otx.init)(params))
  return out


def positive_control():
  """A jitted global sum over sharded leaves must show an all-reduce."""
  import jax
  import jax.numpy as jnp

  mesh = make_mesh(explicit=False)
  params = place(host_params_and_grads()[0], mesh)
  total = jax.jit(lambda t: sum(jnp.sum(x) for x in jax.tree.leaves(t)))
  return count_collectives(total.lower(params).compile().as_text())


def sharding_main():
  out = {"positive_control": positive_control(), "configs": {}}
  for name, config in CONFIGS.items():
    out["configs"][name] = measure_config(config)
  return out


def trajectories_main():
  """Whether sharded runs are bitwise the unsharded one, per config."""
  import jax
  import optax_rmsprop

  out = {}
  for name, config in CONFIGS.items():
    tx = make_tx(config)
    host_params, grads = host_params_and_grads()
    step = step_fn(tx)
    single = run(step, host_params, tx.init(host_params), grads)
    for explicit in (False, True):
      mesh = make_mesh(explicit)
      params = place(host_params, mesh)
      with jax.set_mesh(mesh):
        state = optax_rmsprop.tools.init_sharded(tx, params)
        sharded = run(step, params, state, [place(g, mesh) for g in grads])
      kind = "explicit" if explicit else "auto"
      out[f"{name}/{kind}"] = bit_equal(sharded, single)
  return out


def checkpoint_main(directory):
  """Saves sharded params+state mid-run with Orbax, restores, continues."""
  import jax
  import optax
  import optax_rmsprop
  import orbax.checkpoint as ocp

  tx = optax.inject_hyperparams(optax_rmsprop.rmsprop)(
      learning_rate=optax.cosine_decay_schedule(0.02, 8),
      centered=True,
      momentum=0.9,
      bias_correction=True,
      # Step 1 of centered + bias correction: optax's ν̂ − μ̂² is rounding
      # noise, NaN where below -ε; clamped here so the run stays finite.
      safe_numerics=True,
  )
  host_params, grads = host_params_and_grads(steps=8, seed=1)
  mesh = make_mesh(explicit=False)
  params = place(host_params, mesh)
  grads = [place(g, mesh) for g in grads]
  step = step_fn(tx)
  state = optax_rmsprop.tools.init_sharded(tx, params)

  full = run(step, params, state, grads)
  half = run(step, params, state, grads[:4])
  checkpointer = ocp.StandardCheckpointer()
  path = f"{directory}/step4"
  checkpointer.save(path, {"params": half[0], "opt_state": half[1]})
  checkpointer.wait_until_finished()

  # The restore target: shapes from eval_shape, layouts from the params'.
  abstract_state = jax.eval_shape(tx.init, params)
  target = {
      "params": jax.tree.map(
          lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=p.sharding),
          params,
      ),
      "opt_state": jax.tree.map(
          lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
          abstract_state,
          optax_rmsprop.tools.state_shardings(tx, params),
      ),
  }
  restored = checkpointer.restore(path, target)
  resumed = run(step, restored["params"], restored["opt_state"], grads[4:])
  return {
      "restored_equals_saved_bitwise": bit_equal(
          (restored["params"], restored["opt_state"]), half
      ),
      "restored_structure_equal": jax.tree.structure(restored["opt_state"])
      == jax.tree.structure(half[1]),
      "restored_layout": layout(restored),
      "saved_layout": layout({"params": half[0], "opt_state": half[1]}),
      "expected_state_layout": layout(optax_rmsprop.tools.state_shardings(tx, params)),
      "restored_state_layout": layout(restored["opt_state"]),
      "resumed_equals_uninterrupted_bitwise": bit_equal(resumed, full),
      "resumed_vs_uninterrupted_max_abs": max_abs_diff(resumed, full),
      "final_state_layout": layout(resumed[1]),
  }


def stacked_main():
  """stack_leaves on the mesh: groups respect shardings, state is laid out
  as state_shardings says, updates equal the unstacked layout's."""
  import jax
  import numpy as np
  import optax
  import optax_rmsprop
  from jax.sharding import NamedSharding, PartitionSpec as P

  mesh = make_mesh(explicit=False)
  rng = np.random.default_rng(0)
  specs = {  # a, b: same shape and spec (stacked); c: same shape, other spec
      "a": ("fsdp", "tp"), "b": ("fsdp", "tp"), "c": ("tp", "fsdp"),
      "bias": ("tp",), "none": None,
  }
  host = {k: rng.normal(size=(8,) if k == "bias" else (8, 8)).astype(
      np.float32) for k in specs if specs[k] is not None}
  host["none"] = None
  params = {
      k: None if spec is None else jax.device_put(
          host[k], NamedSharding(mesh, P(*spec)))
      for k, spec in specs.items()
  }
  config = dict(centered=True, momentum=0.9, bias_correction=True)
  tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.01, **config))
  flat = optax_rmsprop.rmsprop(0.01, **config)
  state = optax_rmsprop.tools.init_sharded(tx, params)
  want = optax_rmsprop.tools.state_shardings(tx, params)
  step = step_fn(tx)
  grads = [{k: None if v is None else np.cos(v + i).astype(np.float32)
            for k, v in host.items()} for i in range(4)]
  grads = [{k: None if v is None else jax.device_put(v, params[k].sharding)
            for k, v in g.items()} for g in grads]
  got = run(step, params, state, grads)
  ref = run(step_fn(flat), params, optax_rmsprop.tools.init_sharded(flat, params),
            grads)
  try:
    optax.tree_map_params(tx, lambda x: x, state)
    tree_map_params_error = ""
  except TypeError as e:
    tree_map_params_error = str(e)
  ulps = max(
      int(np.max(np.abs(np.asarray(a).view(np.int32)
                        - np.asarray(b).view(np.int32))))
      for a, b in zip(jax.tree.leaves(got[0]), jax.tree.leaves(ref[0]))
  )
  return {
      "groups": [list(g.indices) for g in state.groups],
      "state_layout": layout(state),
      "expected_layout": layout(want),
      "final_state_layout": layout(got[1]),
      "max_ulps_vs_unstacked": ulps,
      "tree_map_params_error": tree_map_params_error,
  }


if __name__ == "__main__":
  import jax

  if jax.device_count() != 8:
    sys.exit(f"needs 8 devices, got {jax.device_count()}: set XLA_FLAGS")
  if sys.argv[1] == "sharding":
    result = sharding_main()
  elif sys.argv[1] == "trajectories":
    result = trajectories_main()
  elif sys.argv[1] == "stacked":
    result = stacked_main()
  else:
    result = checkpoint_main(sys.argv[2])
  print("JSON:" + json.dumps(result))
