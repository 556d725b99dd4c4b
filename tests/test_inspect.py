"""`rms_stats` against statistics computed by hand from a NumPy run.

Each test feeds the same gradients to an optimizer and to the NumPy
reference of the RMSprop equations (tests/numpy_reference.py, float64), then
computes every statistic by hand with NumPy (``np.quantile``, the formula of
the step size) from the reference's ν and μ, so neither the state layout nor
the inspection code is trusted. Gradients are ~1 with ε = 0.1 where the ε
placement is tested, and only 4 steps are taken, so ε and the bias correction
change the step sizes by several percent, far above the 1e-5 tolerance.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop
from numpy_reference import Config
from numpy_reference import NumpyRMSprop

RTOL = 1e-5
STEPS = 4
QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)
SHAPES = {"dense/kernel": (6, 5), "dense/bias": (5,), "frozen": (4,),
          "half": (8,)}


def nested(flat):
  """{'dense/kernel': x} -> {'dense': {'kernel': x}}."""
  out = {}
  for name, value in flat.items():
    *outer, last = name.split("/")
    node = out
    for key in outer:
      node = node.setdefault(key, {})
    node[last] = value
  return out


def gradients(steps=STEPS, seed=0):
  """Per-step gradients: a dense kernel with a mean (so the centered variance
  differs from ν), a small bias (ε matters), a leaf that never gets a
  gradient and one that does on half of its elements (ν = 0 counts)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(steps):
    g = {"dense/kernel": 0.5 + rng.normal(size=(6, 5)),
         "dense/bias": 0.01 * rng.normal(size=5),
         "frozen": np.zeros(4),
         "half": np.concatenate([np.zeros(4), rng.normal(size=4)])}
    out.append({k: v.astype(np.float32) for k, v in g.items()})
  return out


def run_optax(tx, grads, params=None, jit=True):
  params = nested({k: jnp.zeros(s) for k, s in SHAPES.items()}) \
      if params is None else params
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for g in grads:
    _, state = update(nested(g), state, params)
  return state


def run_reference(config, grads):
  """(ν, μ, t) per leaf from the NumPy reference, in float64."""
  opts = {k: NumpyRMSprop(config, np.zeros(s)) for k, s in SHAPES.items()}
  for g in grads:
    for k, opt in opts.items():
      opt.step(np.zeros(SHAPES[k]), g[k])
  return ({k: o.nu for k, o in opts.items()},
          {k: o.mu for k, o in opts.items()}, opts["frozen"].t)


def quantile_name(q):
  return {0.0: "min", 1.0: "max"}.get(q, f"p{100 * q:g}")


def by_hand(config, grads, lr=None, names=None, per_leaf=True,
            quantiles=QUANTILES, nu_dtype_max=np.finfo(np.float32).max):
  """Every statistic rms_stats reports, in NumPy, from the reference's ν, μ."""
  nus, mus, t = run_reference(config, grads)
  names = names or list(SHAPES)
  c = 1 - config.decay**t if config.bias_correction else 1.0
  if lr is None:
    lr = config.learning_rate
    lr = lr(max(t - 1, 0)) if callable(lr) else lr
  values = {}
  for k in names:
    nu = nus[k]
    v = np.maximum(nu / c - (mus[k] / c) ** 2, 0) if config.centered \
        else nu / c
    if config.eps_in_sqrt:
      step = lr / np.sqrt(v + config.eps)
    else:
      step = lr / (np.sqrt(v) + config.eps)
    values[k] = (nu, v, step)
  out = {"learning_rate": lr}
  groups = values.items() if per_leaf else [("", tuple(
      np.concatenate([x[i].ravel() for x in values.values()])
      for i in range(3)))]
  for k, (nu, v, step) in groups:
    pre = lambda what: "/".join(filter(None, (what, k)))  # noqa: E731
    out[pre("nu_saturated")] = np.sum(nu >= nu_dtype_max)
    out[pre("nu_zero")] = np.sum(nu == 0)
    for q in quantiles:
      out[pre("nu") + "/" + quantile_name(q)] = np.quantile(nu, q)
      out[pre("step_size") + "/" + quantile_name(q)] = np.quantile(step, q)
      if config.centered:
        out[pre("variance") + "/" + quantile_name(q)] = np.quantile(v, q)
  return out


def assert_stats(actual, expected, count=None, rtol=RTOL):
  if count is not None:
    expected = {**expected, "count": count}
  assert sorted(actual) == sorted(expected)
  for key, want in expected.items():
    np.testing.assert_allclose(np.asarray(actual[key]), want, rtol=rtol,
                               atol=1e-12, err_msg=key)


def schedule(count):
  return 0.05 * 0.8**count


CORE = {
    "plain": Config(learning_rate=0.01),
    "eps_outside": Config(learning_rate=0.01, eps=0.1, eps_in_sqrt=False),
    "eps_inside_large": Config(learning_rate=0.01, eps=0.1),
    "centered": Config(learning_rate=0.01, centered=True, eps=1e-4),
    "bias_correction": Config(learning_rate=0.01, bias_correction=True),
    "centered_bias_correction": Config(
        learning_rate=0.01, centered=True, bias_correction=True, eps=1e-4,
        decay=0.8),
    "momentum": Config(learning_rate=0.01, momentum=0.9, nesterov=True),
    "schedule": Config(learning_rate=schedule, momentum=0.5),
    "initial_scale": Config(learning_rate=0.01, initial_scale=1.0),
}


def core_kwargs(config):
  return dataclasses.asdict(config)  # Config's fields are rmsprop's arguments


@pytest.mark.parametrize("name", list(CORE))
def test_rmsprop_matches_hand_computation(name):
  config = CORE[name]
  grads = gradients()
  state = run_optax(optax_rmsprop.rmsprop(**core_kwargs(config)), grads)
  stats = optax_rmsprop.rms_stats(
      state, learning_rate=config.learning_rate, eps=config.eps,
      eps_in_sqrt=config.eps_in_sqrt, decay=config.decay,
      quantiles=QUANTILES)
  has_count = config.bias_correction or callable(config.learning_rate)
  assert_stats(stats, by_hand(config, grads),
               count=STEPS if has_count else None)


@pytest.mark.parametrize("name,other,key", [
    ("eps_outside", "eps_inside_large", "step_size/dense/bias/p50"),
    ("bias_correction", "plain", "step_size/dense/kernel/p50"),
    ("centered", "plain", "step_size/dense/kernel/p50"),
    ("initial_scale", "plain", "step_size/dense/kernel/p50"),
])
def test_the_options_change_the_numbers(name, other, key):
  """The tolerance guards real effects: each option moves the statistic by
  more than 1% on these gradients, a thousand times the tolerance."""
  grads = gradients()
  ratio = by_hand(CORE[name], grads)[key] / by_hand(CORE[other], grads)[key]
  assert abs(ratio - 1) > 0.01


def test_aggregated_over_leaves():
  config = CORE["centered"]
  grads = gradients()
  state = run_optax(optax_rmsprop.rmsprop(**core_kwargs(config)), grads)
  stats = optax_rmsprop.rms_stats(state, learning_rate=0.01, eps=1e-4,
                                  per_leaf=False, quantiles=QUANTILES)
  assert_stats(stats, by_hand(config, grads, per_leaf=False))


def test_min_max_only_is_the_same_as_from_a_sort():
  config = CORE["centered_bias_correction"]
  grads = gradients()
  state = run_optax(optax_rmsprop.rmsprop(**core_kwargs(config)), grads)
  kwargs = dict(learning_rate=0.01, eps=1e-4, decay=0.8)
  cheap = optax_rmsprop.rms_stats(state, quantiles=(0.0, 1.0), **kwargs)
  full = optax_rmsprop.rms_stats(state, quantiles=QUANTILES, **kwargs)
  assert_stats(cheap, by_hand(config, grads, quantiles=(0.0, 1.0)),
               count=STEPS)
  for key, value in cheap.items():
    assert float(value) == float(full[key]), key


# Presets: (factory, its kwargs, the equivalent Config, eps_in_sqrt).
PRESETS = {
    "torch": (optax_rmsprop.torch_rmsprop,
              dict(lr=0.01, alpha=0.9, eps=0.1),
              Config(learning_rate=0.01, decay=0.9, eps=0.1,
                     eps_in_sqrt=False)),
    "torch_centered": (optax_rmsprop.torch_rmsprop,
                       dict(lr=0.01, eps=1e-3, centered=True, momentum=0.9),
                       Config(learning_rate=0.01, decay=0.99, eps=1e-3,
                              eps_in_sqrt=False, centered=True)),
    "keras": (optax_rmsprop.keras_rmsprop,
              dict(learning_rate=0.01, epsilon=0.1, centered=True),
              Config(learning_rate=0.01, eps=0.1, centered=True)),
    "tf1": (optax_rmsprop.tf1_rmsprop,
            dict(learning_rate=0.01, epsilon=0.1, momentum=0.9),
            Config(learning_rate=0.01, eps=0.1, initial_scale=1.0)),
    "timm": (optax_rmsprop.timm_rmsprop_tf,
             dict(lr=0.01, eps=0.1, centered=True),
             Config(learning_rate=0.01, eps=0.1, initial_scale=1.0,
                    centered=True)),
    "dqn": (optax_rmsprop.dqn_rmsprop, dict(learning_rate=0.01),
            Config(learning_rate=0.01, decay=0.95, eps=0.01, centered=True)),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_given_and_injected(name):
  factory, kwargs, config = PRESETS[name]
  grads = gradients()
  expected = by_hand(config, grads)
  state = run_optax(factory(**kwargs), grads)
  stats = optax_rmsprop.rms_stats(
      state, learning_rate=config.learning_rate, eps=config.eps,
      eps_in_sqrt=config.eps_in_sqrt, quantiles=QUANTILES)
  assert_stats(stats, expected)
  # Under inject_hyperparams the state holds lr and ε under the preset's own
  # argument names (lr/learning_rate, eps/epsilon): nothing else to pass.
  state = run_optax(optax.inject_hyperparams(factory)(**kwargs), grads)
  stats = optax_rmsprop.rms_stats(state, eps_in_sqrt=config.eps_in_sqrt,
                                  quantiles=QUANTILES)
  assert_stats(stats, expected, count=STEPS)


def test_optax_rmsprop_states():
  """optax's own rmsprop keeps the same state classes: it works there too."""
  grads = gradients()
  for config in (CORE["plain"], CORE["centered"]):
    state = run_optax(
        optax.rmsprop(0.01, eps=config.eps, centered=config.centered), grads)
    stats = optax_rmsprop.rms_stats(state, learning_rate=0.01, eps=config.eps,
                                    quantiles=QUANTILES)
    assert_stats(stats, by_hand(config, grads))


def test_inject_hyperparams_with_a_schedule_reports_the_latest_lr():
  config = CORE["schedule"]
  grads = gradients()
  tx = optax.inject_hyperparams(optax_rmsprop.rmsprop)(
      learning_rate=schedule, momentum=0.5)
  stats = optax_rmsprop.rms_stats(run_optax(tx, grads), quantiles=QUANTILES)
  expected = by_hand(config, grads)
  assert expected["learning_rate"] == schedule(STEPS - 1)
  assert_stats(stats, expected, count=STEPS)
  # Before any update: the first update's lr, count 0.
  state = tx.init(nested({k: jnp.zeros(s) for k, s in SHAPES.items()}))
  stats = optax_rmsprop.rms_stats(state)
  assert float(stats["learning_rate"]) == pytest.approx(schedule(0))
  assert int(stats["count"]) == 0


def test_given_values_win_over_injected_ones():
  grads = gradients()
  tx = optax.inject_hyperparams(optax_rmsprop.rmsprop)(learning_rate=0.01)
  stats = optax_rmsprop.rms_stats(run_optax(tx, grads), learning_rate=0.02)
  assert float(stats["learning_rate"]) == pytest.approx(0.02)


def test_wrappers_chain_masked_apply_if_finite():
  config = CORE["centered_bias_correction"]
  grads = gradients()
  kwargs = dict(learning_rate=0.01, eps=1e-4, decay=0.8, quantiles=QUANTILES)
  inner = optax_rmsprop.rmsprop(**core_kwargs(config))
  mask = nested({k: k != "frozen" for k in SHAPES})
  tx = optax.chain(optax.clip_by_global_norm(100.0),
                   optax.masked(optax.apply_if_finite(inner, 5), mask))
  # A non-finite gradient between the others: apply_if_finite skips it.
  bad = {k: np.full_like(v, np.nan) for k, v in grads[0].items()}
  state = run_optax(tx, grads[:2] + [bad] + grads[2:])
  names = [k for k in SHAPES if k != "frozen"]
  assert_stats(optax_rmsprop.rms_stats(state, **kwargs),
               by_hand(config, grads, names=names), count=STEPS)


def test_multi_steps_counts_inner_updates():
  config = CORE["bias_correction"]
  grads = gradients(steps=2 * STEPS, seed=1)
  tx = optax.MultiSteps(
      optax.inject_hyperparams(optax_rmsprop.rmsprop)(
          learning_rate=0.01, bias_correction=True), every_k_schedule=2)
  state = run_optax(tx, grads)
  means = [{k: (a[k] + b[k]) / 2 for k in a}
           for a, b in zip(grads[::2], grads[1::2])]
  assert_stats(optax_rmsprop.rms_stats(state, quantiles=QUANTILES),
               by_hand(config, means), count=STEPS)


def test_stack_leaves_per_leaf_and_per_group():
  config = CORE["centered"]
  shapes = {"a": (3, 4), "b": (3, 4), "c": (5,)}
  rng = np.random.default_rng(2)
  grads = [{k: (0.3 + rng.normal(size=s)).astype(np.float32)
            for k, s in shapes.items()} for _ in range(STEPS)]
  params = {k: jnp.zeros(s) for k, s in shapes.items()}
  tx = optax_rmsprop.tools.stack_leaves(
      optax_rmsprop.rmsprop(0.01, eps=1e-4, centered=True))
  state = run_optax(tx, grads, params)
  opts = {k: NumpyRMSprop(config, np.zeros(s)) for k, s in shapes.items()}
  for g in grads:
    for k in shapes:
      opts[k].step(np.zeros(shapes[k]), g[k])
  kwargs = dict(learning_rate=0.01, eps=1e-4, quantiles=(0.5,))
  per_leaf = optax_rmsprop.rms_stats(state, params=params, **kwargs)
  per_group = optax_rmsprop.rms_stats(state, **kwargs)
  for names, stats in (({"a": ["a"], "b": ["b"], "c": ["c"]}, per_leaf),
                       ({"group0": ["a", "b"], "group1": ["c"]}, per_group)):
    assert len(stats) == 1 + 5 * len(names)
    for label, members in names.items():
      nu = np.concatenate([opts[k].nu.ravel() for k in members])
      mu = np.concatenate([opts[k].mu.ravel() for k in members])
      step = 0.01 / np.sqrt(np.maximum(nu - mu**2, 0) + 1e-4)
      np.testing.assert_allclose(stats[f"step_size/{label}/p50"],
                                 np.median(step), rtol=RTOL)
      np.testing.assert_allclose(stats[f"nu/{label}/p50"], np.median(nu),
                                 rtol=RTOL)
  with pytest.raises(ValueError, match="does not match the stack_leaves"):
    optax_rmsprop.rms_stats(state, params={"a": params["a"]}, **kwargs)


def test_stack_leaves_names_come_from_params_with_none_leaves_counted():
  # Two equal-shaped leaves around a None leaf share a group; the names are
  # the params' paths at the positions the state recorded.
  params = {"a": jnp.zeros(3), "b": None, "c": jnp.zeros(3), "d": jnp.zeros(2)}
  grads = {"a": jnp.full(3, 1.0), "b": None, "c": jnp.full(3, 2.0),
           "d": jnp.full(2, 4.0)}
  tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1, eps=0.0))
  state = run_optax(tx, [grads], params)
  stats = optax_rmsprop.rms_stats(state, params=params, learning_rate=0.1,
                                  eps=0.0, quantiles=(0.5,))
  assert {k for k in stats if k.startswith("nu/")} == {
      "nu/a/p50", "nu/c/p50", "nu/d/p50"}
  for name, g in (("a", 1.0), ("c", 2.0), ("d", 4.0)):
    np.testing.assert_allclose(stats[f"nu/{name}/p50"], 0.1 * g**2, rtol=RTOL)
  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                        params)
  from_shapes = optax_rmsprop.rms_stats(state, params=shapes, learning_rate=0.1,
                                        eps=0.0, quantiles=(0.5,))
  assert from_shapes.keys() == stats.keys()
  with pytest.raises(ValueError, match="does not match the stack_leaves"):
    optax_rmsprop.rms_stats(state, params={**params, "b": jnp.zeros(3)},
                            learning_rate=0.1, eps=0.0)


LABELS = nested({k: "fast" if k.startswith("dense") else "slow"
                 for k in SHAPES})
GROUP_LR = {"fast": 0.01, "slow": 0.001}


def _by_group(stats, prefix):
  """Each leaf's p50 step size and its group's lr, from keys
  ``inner_states/<label>/<prefix><key>``."""
  steps, lrs = {}, {}
  for name in SHAPES:
    label = "fast" if name.startswith("dense") else "slow"
    at = f"inner_states/{label}/{prefix}"
    steps[name] = stats[f"{at}step_size/{name}/p50"]
    lrs[label] = stats[f"{at}learning_rate"]
  return steps, lrs


def _expected_by_group(grads):
  steps = {}
  for label, lr in GROUP_LR.items():
    config = dataclasses.replace(CORE["plain"], learning_rate=lr)
    expected = by_hand(config, grads, quantiles=(0.5,))
    steps.update({name: expected[f"step_size/{name}/p50"] for name in SHAPES
                  if (label == "fast") == name.startswith("dense")})
  return steps


def test_multi_transform_prefixes_each_state_with_its_own_lr():
  """Issue #17: one learning_rate was applied to every group, and this test
  expected the slow group's (lr 0.001) step sizes at lr 0.01. A dict gives
  each group its lr."""
  grads = gradients()
  tx = optax.multi_transform(
      {"fast": optax_rmsprop.rmsprop(GROUP_LR["fast"]),
       "slow": optax_rmsprop.rmsprop(GROUP_LR["slow"], momentum=0.9)},
      LABELS)
  stats = optax_rmsprop.rms_stats(run_optax(tx, grads), eps=1e-8,
                                  learning_rate=GROUP_LR, quantiles=(0.5,))
  steps, lrs = _by_group(stats, "inner_state/0/")
  expected = _expected_by_group(grads)
  for name in SHAPES:
    np.testing.assert_allclose(steps[name], expected[name], rtol=RTOL)
  np.testing.assert_allclose([lrs["fast"], lrs["slow"]], [0.01, 0.001])
  # One value still applies to every group, as asked.
  stats = optax_rmsprop.rms_stats(run_optax(tx, grads), eps=1e-8,
                                  learning_rate=0.01, quantiles=(0.5,))
  assert float(_by_group(stats, "inner_state/0/")[1]["slow"]) == (
      pytest.approx(0.01))


def test_multi_transform_of_injected_groups_reads_each_groups_lr():
  """Each group's injected lr, and a dict may cover only some groups."""
  grads = gradients()
  tx = optax.multi_transform(
      {label: optax.inject_hyperparams(optax_rmsprop.rmsprop)(lr)
       for label, lr in GROUP_LR.items()}, LABELS)
  state = run_optax(tx, grads)
  expected = _expected_by_group(grads)
  for given in (None, {"slow": GROUP_LR["slow"]}):
    stats = optax_rmsprop.rms_stats(
        state, learning_rate=given, quantiles=(0.5,))
    steps, lrs = _by_group(stats, "inner_state/inner_state/0/")
    for name in SHAPES:
      np.testing.assert_allclose(steps[name], expected[name], rtol=RTOL)
    np.testing.assert_allclose([lrs["fast"], lrs["slow"]], [0.01, 0.001],
                               rtol=1e-7)


def test_a_learning_rate_dict_must_cover_each_group():
  grads = gradients()
  tx = optax.multi_transform(
      {label: optax_rmsprop.rmsprop(lr) for label, lr in GROUP_LR.items()},
      LABELS)
  state = run_optax(tx, grads)
  with pytest.raises(ValueError, match="no entry for group 'slow'"):
    optax_rmsprop.rms_stats(state, eps=1e-8, learning_rate={"fast": 0.01})
  with pytest.raises(ValueError, match=r"learning_rate\['fast'\] must be"):
    optax_rmsprop.rms_stats(state, eps=1e-8,
                            learning_rate={"fast": -1.0, "slow": 0.1})
  plain = run_optax(optax_rmsprop.rmsprop(0.01), grads)
  with pytest.raises(ValueError, match="in no optax.partition"):
    optax_rmsprop.rms_stats(plain, eps=1e-8, learning_rate={"fast": 0.01})


def test_nnx_optimizer_eager_and_under_nnx_jit():
  nnx = pytest.importorskip("flax.nnx")

  class Model(nnx.Module):

    def __init__(self, rngs):
      self.dense = nnx.Linear(6, 5, rngs=rngs)
      self.frozen = nnx.Param(jnp.zeros(4))
      self.half = nnx.Param(jnp.zeros(8))

  model = Model(nnx.Rngs(0))
  config = CORE["centered_bias_correction"]
  optimizer = nnx.Optimizer(
      model, optax_rmsprop.rmsprop(**core_kwargs(config)), wrt=nnx.Param)
  grads = gradients()
  for g in grads:
    grad_state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(grad_state, nested(g))
    optimizer.update(model, grad_state)
  kwargs = dict(learning_rate=0.01, eps=1e-4, decay=0.8, quantiles=QUANTILES)
  expected = by_hand(config, grads)
  # The optimizer's state keeps its own count; nnx.Optimizer's step is the
  # outermost counter.
  assert_stats(optax_rmsprop.rms_stats(optimizer, **kwargs), expected,
               count=STEPS)
  assert_stats(optax_rmsprop.rms_stats(optimizer.opt_state, **kwargs),
               expected, count=STEPS)
  jitted = nnx.jit(lambda opt: optax_rmsprop.rms_stats(opt, **kwargs))
  assert_stats(jitted(optimizer), expected, count=STEPS)
  with pytest.raises(ValueError, match="nnx.state"):
    optax_rmsprop.rms_stats(nnx.state(optimizer), **kwargs)


def test_nnx_optimizer_step_is_the_count_of_last_resort():
  nnx = pytest.importorskip("flax.nnx")
  model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax_rmsprop.rmsprop(0.01), wrt=nnx.Param)
  grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
  for _ in range(3):
    optimizer.update(model, grads)
  stats = optax_rmsprop.rms_stats(optimizer, learning_rate=0.01, eps=1e-8)
  assert int(stats["count"]) == 3
  assert "count" not in optax_rmsprop.rms_stats(
      optimizer.opt_state, learning_rate=0.01, eps=1e-8)


def test_jit_and_eager_agree():
  config = CORE["schedule"]
  grads = gradients()
  state = run_optax(optax_rmsprop.rmsprop(**core_kwargs(config)), grads,
                    jit=False)
  fn = lambda s: optax_rmsprop.rms_stats(  # noqa: E731
      s, learning_rate=schedule, eps=1e-8, quantiles=QUANTILES)
  eager, jitted = fn(state), jax.jit(fn)(state)
  assert_stats(jitted, by_hand(config, grads), count=STEPS)
  for key in eager:
    np.testing.assert_allclose(eager[key], jitted[key], rtol=1e-6)


def test_saturated_nu_is_counted():
  g = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
  # |g|² overflows: ν is inf (as optax's), or saturates at a bfloat16
  # buffer's largest finite value.
  g["dense/kernel"][0] = 1e30
  params = nested({k: jnp.zeros(s) for k, s in SHAPES.items()})
  for tx, big in ((optax_rmsprop.rmsprop(0.1), np.inf),
                  (optax_rmsprop.rmsprop(0.1, nu_dtype=jnp.bfloat16),
                   float(jnp.finfo(jnp.bfloat16).max)),
                  (optax.rmsprop(0.1), np.inf)):
    state = run_optax(tx, [g], params)
    stats = optax_rmsprop.rms_stats(state, learning_rate=0.1, eps=1e-8,
                                    quantiles=(1.0,))
    assert int(stats["nu_saturated/dense/kernel"]) == 5
    assert int(stats["nu_zero/dense/kernel"]) == 25
    assert float(stats["nu/dense/kernel/max"]) == big


def test_quantiles_from_a_numpy_vector_and_not_traced():
  state = run_optax(optax_rmsprop.rmsprop(0.01), gradients())
  kwargs = dict(learning_rate=0.01, eps=1e-8)
  from_tuple = optax_rmsprop.rms_stats(state, quantiles=(0.0, 0.5, 1.0),
                                       **kwargs)
  from_array = optax_rmsprop.rms_stats(state, quantiles=np.linspace(0, 1, 3),
                                       **kwargs)
  assert from_array.keys() == from_tuple.keys()
  for key, value in from_tuple.items():
    np.testing.assert_array_equal(from_array[key], value)
  with pytest.raises(TypeError, match="quantiles must be static"):
    jax.jit(lambda q: optax_rmsprop.rms_stats(state, quantiles=q, **kwargs))(
        jnp.array([0.5]))


def test_errors_name_what_is_missing():
  grads = gradients(steps=1)
  state = run_optax(optax_rmsprop.rmsprop(0.01, bias_correction=True), grads)
  with pytest.raises(ValueError, match="needs learning_rate"):
    optax_rmsprop.rms_stats(state, eps=1e-8, decay=0.9)
  with pytest.raises(ValueError, match="needs eps"):
    optax_rmsprop.rms_stats(state, learning_rate=0.01, decay=0.9)
  with pytest.raises(ValueError, match="needs decay"):
    optax_rmsprop.rms_stats(state, learning_rate=0.01, eps=1e-8)
  plain = run_optax(optax_rmsprop.rmsprop(0.01), grads)
  with pytest.raises(ValueError, match="no update count"):
    optax_rmsprop.rms_stats(plain, learning_rate=schedule, eps=1e-8)
  with pytest.raises(ValueError, match="no RMSprop state"):
    optax_rmsprop.rms_stats(optax.adam(0.1).init(jnp.zeros(2)),
                            learning_rate=0.01, eps=1e-8)
  with pytest.raises(ValueError, match="quantiles"):
    optax_rmsprop.rms_stats(plain, learning_rate=0.01, eps=1e-8,
                            quantiles=(1.5,))


def _run(tx, params, steps=3):
  state = tx.init(params)
  for k in range(steps):
    grads = jax.tree.map(lambda p, k=k: jnp.full_like(p, 0.5 * (k + 1)), params)
    _, state = tx.update(grads, state, params)
  return state


def test_nested_inject_hyperparams_the_innermost_value_wins():
  """An outer inject_hyperparams with its own learning_rate (here scaling a
  later step) does not hide the RMS state's own injected one."""
  inner = optax.inject_hyperparams(optax_rmsprop.rmsprop)(
      learning_rate=0.1, eps=1e-8)
  tx = optax.inject_hyperparams(
      lambda learning_rate: optax.chain(inner, optax.scale(learning_rate))
  )(learning_rate=0.5)
  stats = optax_rmsprop.rms_stats(_run(tx, {"w": jnp.ones(3)}))
  np.testing.assert_allclose(stats["learning_rate"], 0.1)


def test_a_scale_by_schedule_count_counts_for_its_chain():
  """optax.chain(scale_by_rms, scale_by_schedule): the schedule's count is
  the chain's update count, so rms_stats can call the schedule with it."""
  schedule = optax.exponential_decay(0.1, 1, 0.5)
  tx = optax.chain(optax_rmsprop.scale_by_rms(), optax.scale_by_schedule(schedule))
  stats = optax_rmsprop.rms_stats(
      _run(tx, {"w": jnp.ones(3)}), learning_rate=schedule, eps=1e-8)
  assert int(stats["count"]) == 3
  np.testing.assert_allclose(stats["learning_rate"], schedule(2), rtol=1e-6)


def test_multisteps_counts_its_updates_not_its_mini_steps():
  """optax.MultiSteps around an RMS state without a count of its own: the
  count is the updates made (gradient_step), not the calls into the current
  accumulation (mini_step)."""
  tx = optax.MultiSteps(optax_rmsprop.rmsprop(0.1), every_k_schedule=2)
  state = _run(tx, {"w": jnp.ones(3)}, steps=5)
  stats = optax_rmsprop.rms_stats(
      state, learning_rate=lambda count: 0.1 * (count + 1), eps=1e-8)
  assert int(stats["count"]) == 2
  np.testing.assert_allclose(stats["learning_rate"], 0.2, rtol=1e-6)


def test_nested_partitions_take_the_innermost_groups_learning_rate():
  """A learning_rate dict keyed by group label: a state inside nested
  optax.partition calls takes its innermost group's entry."""
  params = {"w": jnp.ones(3), "v": jnp.ones(2)}
  inner = optax.partition(
      {"x": optax_rmsprop.rmsprop(0.1), "y": optax.sgd(0.3)},
      {"w": "x", "v": "y"},
  )
  tx = optax.partition({"a": inner, "b": optax.sgd(0.3)}, {"w": "a", "v": "b"})
  stats = optax_rmsprop.rms_stats(
      _run(tx, params), learning_rate={"x": 0.1, "a": 0.2}, eps=1e-8)
  np.testing.assert_allclose(stats["learning_rate"], 0.1)
