"""Every public function, called with wrong values and odd trees.

Each case calls a public function of ``optax_rmsprop`` the way a careless
user would: a hyperparameter of the wrong type or value (``str``, ``list``,
``None``, ``bool``, ``complex``, NaN, ±inf, -0.0, huge, negative, an array),
a boolean switch given something else, an odd tree (``None`` leaves, empty
containers, nested tuples/dicts/NamedTuples, a custom pytree node, scalar
leaves, 0-size arrays) or mismatched gradients, state and params. A case
passes when the call either works (a transform then runs ``init`` and
``update``, and its updates have the gradients' structure, shapes and
dtypes, and equal those of the same leaves passed as a flat dict, so odd
nesting cannot change the numbers) or raises ``ValueError``/``TypeError``
whose message names the argument or the leaf path. Anything else (another
exception, an error from deep inside JAX that names neither, a case running
past its time limit) fails.

``python tests/fuzz_harness.py`` writes the table of every case and its
outcome to ``docs/fuzzing.md``; ``test_fuzz_inputs.py`` runs the cases and
checks the committed table is what they give now.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import math
import os
import pathlib
import re
import signal
import sys
from typing import Any, Callable, NamedTuple, Optional

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import optax_rmsprop  # noqa: E402

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "fuzzing.md"
TIME_LIMIT_S = 60

# Wrong values where a number is needed, by label (the table's columns).
BAD_NUMBERS = {
    "str": "0.1",
    "list": [0.1],
    "None": None,
    "bool": True,
    "complex": 0.1 + 0.1j,
    "NaN": math.nan,
    "+inf": math.inf,
    "-inf": -math.inf,
    "-0.0": -0.0,
    "huge": 1e300,
    "negative": -0.5,
    "array(2)": np.array([0.1, 0.2]),
}
# Labels of values no hyperparameter may take: accepting one is a failure.
NON_FINITE = ("NaN", "+inf", "-inf")
# Wrong values where a bool switch is needed.
BAD_FLAGS = {
    "int 1": 1,
    "str": "yes",
    "None": None,
    "np.bool_": np.True_,
    "float": 1.0,
    "array": np.array([True, False]),
}
# Wrong values where an integer count is needed.
BAD_COUNTS = {
    "str": "3",
    "None": None,
    "bool": True,
    "float 2.5": 2.5,
    "0": 0,
    "negative": -3,
    "NaN": math.nan,
    "huge": 10**30,
}


class Pair(NamedTuple):
  x: Any
  y: Any


@jax.tree_util.register_pytree_node_class
class Box:
  """A custom pytree node holding two children and static metadata."""

  def __init__(self, a, b, tag="box"):
    self.a, self.b, self.tag = a, b, tag

  def tree_flatten(self):
    return (self.a, self.b), self.tag

  @classmethod
  def tree_unflatten(cls, tag, children):
    return cls(*children, tag=tag)


def _arr(*shape, dtype=jnp.float32, seed=0):
  n = int(np.prod(shape)) if shape else 1
  values = np.cos(np.arange(n) + seed).reshape(shape) + 0.1
  return jnp.asarray(values, dtype)


PARAMS = {"w": _arr(3, 4), "b": _arr(4, seed=1)}


@dataclasses.dataclass
class Case:
  function: str
  argument: str  # the argument (or tree) being fuzzed
  label: str  # what was passed
  call: Callable[[], Any]
  names: tuple = ()  # an acceptable error names one of these


@dataclasses.dataclass
class Outcome:
  case: Case
  kind: str  # "ok", "ok non-finite", "ValueError", "TypeError", "FAIL"
  message: str = ""

  @property
  def passed(self) -> bool:
    return not self.kind.startswith("FAIL")


def _finite(tree) -> bool:
  return all(
      bool(np.all(np.isfinite(np.asarray(x))))
      for x in jax.tree.leaves(tree)
      if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
  )


def exercise(tx, params=None, grads=None, steps=2, flat_check=True):
  """Runs ``tx`` on ``params``; returns whether the updates are finite.

  Raises AssertionError if the updates do not have the gradients'
  structure, shapes and dtypes, or differ from those of the same leaves as
  a flat dict.
  """
  params = PARAMS if params is None else params
  grads = jax.tree.map(lambda p: 0.5 * p - 0.2, params) if grads is None \
      else grads
  state = tx.init(params)
  for _ in range(steps):
    updates, state = tx.update(grads, state, params)
  is_none = lambda x: x is None
  got = jax.tree.structure(updates, is_leaf=is_none)
  want = jax.tree.structure(grads, is_leaf=is_none)
  assert got == want, f"updates {got} != gradients {want}"
  for u, g, p in zip(jax.tree.leaves(updates), jax.tree.leaves(grads),
                     jax.tree.leaves(params)):
    assert jnp.shape(u) == jnp.shape(g), (jnp.shape(u), jnp.shape(g))
    # The gradient's dtype, or its promotion with the param's (a coupled
    # decay adds the param to the gradient, as optax.add_decayed_weights).
    dtypes = (jnp.asarray(g).dtype,
              jnp.promote_types(jnp.asarray(g).dtype, jnp.asarray(p).dtype))
    assert jnp.asarray(u).dtype in dtypes, (jnp.asarray(u).dtype, dtypes)
  if flat_check:
    leaves = lambda t: jax.tree.leaves(t, is_leaf=is_none)
    keep = [i for i, g in enumerate(leaves(grads)) if g is not None]
    flat = lambda t: {f"{i:03d}": leaves(t)[i] for i in keep}
    flat_params, flat_grads = flat(params), flat(grads)
    state = tx.init(flat_params)
    for _ in range(steps):
      flat_updates, state = tx.update(flat_grads, state, flat_params)
    for i in keep:
      a = np.asarray(leaves(updates)[i])
      b = np.asarray(flat_updates[f"{i:03d}"])
      np.testing.assert_array_equal(a, b, err_msg=f"leaf {i}")
  return _finite(updates)


class _TimeLimit(Exception):
  pass


def _alarm(signum, frame):
  raise _TimeLimit()


def run_case(case: Case) -> Outcome:
  previous = signal.signal(signal.SIGALRM, _alarm)
  signal.alarm(TIME_LIMIT_S)
  try:
    result = case.call()
  except _TimeLimit:
    return Outcome(case, "FAIL: time limit")
  except (ValueError, TypeError) as e:
    message = _clean(str(e))
    kind = type(e).__name__
    if kind not in ("ValueError", "TypeError"):
      kind = "TypeError" if isinstance(e, TypeError) else "ValueError"
    if not any(name in message for name in case.names):
      return Outcome(case, f"FAIL: {kind} naming none of {case.names}",
                     message)
    return Outcome(case, kind, message)
  except AssertionError as e:
    return Outcome(case, "FAIL: wrong result", _clean(str(e)))
  except Exception as e:  # noqa: BLE001 - every other exception is a finding
    return Outcome(case, f"FAIL: {type(e).__name__}", _clean(str(e)))
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
  if case.label in NON_FINITE:  # hyperparameters must be finite numbers
    return Outcome(case, "FAIL: a non-finite number accepted")
  return Outcome(case, "ok" if result is not False else "ok non-finite")


def _clean(message: str) -> str:
  """One line, without addresses (so the table is reproducible)."""
  line = " ".join(message.split())
  line = re.sub(r" at 0x[0-9a-f]+", "", line)
  return line if len(line) <= 240 else line[:237] + "..."


# -- The cases -----------------------------------------------------------------


def _transform_cases(function, build, numbers, flags=(), counts=(), use=None,
                     extra=None):
  """Cases for a factory of transforms: each argument given each bad value."""
  use = use or (lambda tx: exercise(tx, steps=1, flat_check=False))
  cases = []
  for arg in numbers:
    for label, value in BAD_NUMBERS.items():
      cases.append(Case(function, arg, label,
                        lambda a=arg, v=value: use(build(**{a: v})), (arg,)))
  for arg in flags:
    for label, value in BAD_FLAGS.items():
      cases.append(Case(function, arg, label,
                        lambda a=arg, v=value: use(build(**{a: v})), (arg,)))
  for arg in counts:
    for label, value in BAD_COUNTS.items():
      cases.append(Case(function, arg, label,
                        lambda a=arg, v=value: use(build(**{a: v})), (arg,)))
  for arg, label, value in extra or ():
    cases.append(Case(function, arg, label,
                      lambda a=arg, v=value: use(build(**{a: v})), (arg,)))
  return cases


def _injected(factory, flag, value, **kwargs):
  """``factory`` under inject_hyperparams with a switch given ``value``,
  jitted: a non-bool switch is traced there."""
  tx = optax.inject_hyperparams(factory)(**{flag: value}, **kwargs)
  params = PARAMS
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  return _finite(updates)


CORE_NUMBERS = ["learning_rate", "decay", "eps", "initial_scale", "momentum",
                "coupled_weight_decay", "decoupled_weight_decay"]
CORE_FLAGS = ["eps_in_sqrt", "centered", "nesterov", "bias_correction",
              "lr_in_momentum", "maximize"]
DTYPE_CASES = [("str 'float32'", "float32"), ("int32", jnp.int32),
               ("bool", jnp.bool_), ("'foo'", "foo"), ("None", None),
               ("complex64", jnp.complex64)]


def _rmsprop(**kw):
  args = dict(learning_rate=0.1, momentum=0.5)
  args.update(kw)
  return optax_rmsprop.rmsprop(**args)


def hyperparameter_cases():
  cases = []
  cases += _transform_cases(
      "rmsprop", _rmsprop, CORE_NUMBERS, CORE_FLAGS,
      extra=[(d, label, v) for d in ("nu_dtype", "momentum_dtype")
             for label, v in DTYPE_CASES]
      + [("weight_decay_mask", "tree of wrong structure", {"w": True}),
         ("weight_decay_mask", "str", "w")],
  )
  for flag in CORE_FLAGS:
    for label, value in [("np.bool_", np.True_), ("int 1", 1)]:
      cases.append(Case(
          "rmsprop", flag, f"{label} under inject_hyperparams",
          lambda f=flag, v=value: _injected(
              optax_rmsprop.rmsprop, f, v, learning_rate=0.1, momentum=0.5),
          (flag,)))
  cases += _transform_cases(
      "scale_by_rms", optax_rmsprop.scale_by_rms,
      ["decay", "eps", "initial_scale"],
      ["eps_in_sqrt", "centered", "bias_correction"],
      extra=[("nu_dtype", label, v) for label, v in DTYPE_CASES])
  cases += _transform_cases(
      "momentum", lambda **kw: optax_rmsprop.momentum(**{"decay": 0.9, **kw}),
      ["decay"], ["nesterov"],
      extra=[("accumulator_dtype", label, v) for label, v in DTYPE_CASES])
  cases += _transform_cases(
      "add_decoupled_weight_decay",
      lambda **kw: optax_rmsprop.add_decoupled_weight_decay(
          **{"learning_rate": 0.1, "weight_decay": 0.1, **kw}),
      ["learning_rate", "weight_decay"],
      extra=[("mask", "tree of wrong structure", {"w": True})])
  cases += _transform_cases(
      "torch_rmsprop", optax_rmsprop.torch_rmsprop,
      ["lr", "alpha", "eps", "weight_decay", "momentum"],
      ["centered", "maximize"])
  cases += _transform_cases(
      "keras_rmsprop",
      lambda **kw: optax_rmsprop.keras_rmsprop(**{"use_ema": True, **kw}),
      ["learning_rate", "rho", "momentum", "epsilon", "weight_decay",
       "clipnorm", "clipvalue", "global_clipnorm", "ema_momentum",
       "loss_scale_factor"],
      ["centered", "use_ema"],
      ["ema_overwrite_frequency", "gradient_accumulation_steps"],
      extra=[("exclude_from_weight_decay", "int", 3),
             ("exclude_from_weight_decay", "bad regex", "(")])
  cases += _transform_cases(
      "tf1_rmsprop",
      lambda **kw: optax_rmsprop.tf1_rmsprop(**{"learning_rate": 0.1, **kw}),
      ["learning_rate", "decay", "momentum", "epsilon"], ["centered"],
      extra=[("sparse", "str", "yes"), ("sparse", "int 1", 1)])
  cases += _transform_cases(
      "timm_rmsprop_tf", optax_rmsprop.timm_rmsprop_tf,
      ["lr", "alpha", "eps", "weight_decay", "momentum", "max_lr"],
      ["centered", "decoupled_decay", "corrected_weight_decay",
       "lr_in_momentum", "caution"])
  cases += _transform_cases(
      "dqn_rmsprop", optax_rmsprop.dqn_rmsprop,
      ["learning_rate", "decay", "eps", "weight_cost"])
  inner = optax_rmsprop.rmsprop(0.1)
  cases += _transform_cases(
      "stack_leaves",
      lambda **kw: optax_rmsprop.tools.stack_leaves(**{"inner": inner, **kw}),
      [], [], ["max_group_size", "max_leaf_size"],
      extra=[("inner", "None", None), ("inner", "str", "rmsprop"),
             ("inner", "factory, not a transform", optax_rmsprop.rmsprop)])
  cases += _transform_cases(
      "lazy_rows",
      lambda **kw: optax_rmsprop.tools.lazy_rows(**{"inner": inner, **kw}),
      [],
      extra=[("inner", "None", None), ("inner", "str", "rmsprop"),
             ("mask", "tree of wrong structure", {"w": True}),
             ("mask", "str", "w")])
  cases += _transform_cases(
      "cautious",
      lambda **kw: optax_rmsprop.tools.cautious(**{"inner": inner, **kw}),
      ["floor"],
      extra=[("inner", "None", None), ("inner", "str", "rmsprop")])
  cases += _schedule_cases()
  return cases


def _schedule_cases():
  def use(s):
    values = [float(s.lr(k)) for k in (0, 5, 9)]
    values += [float(s.momentum(k)) for k in (0, 5, 9)]
    return all(math.isfinite(v) for v in values)

  def build(**kw):
    # epochs and steps_per_epoch count only without total_steps (as torch).
    length = ({"epochs": 2, "steps_per_epoch": 5}
              if {"epochs", "steps_per_epoch"} & kw.keys()
              else {"total_steps": 10})
    return optax_rmsprop.torch.torch_onecycle_schedules(
        **{"max_lr": 0.1, **length, **kw})

  return _transform_cases(
      "torch_onecycle_schedules", build,
      ["max_lr", "pct_start", "base_momentum", "max_momentum", "div_factor",
       "final_div_factor"],
      ["cycle_momentum", "three_phase"],
      ["total_steps", "epochs", "steps_per_epoch"],
      use=use,
      extra=[("anneal_strategy", "'cosine'", "cosine"),
             ("anneal_strategy", "None", None)])


# -- Odd trees -----------------------------------------------------------------


def _trees():
  """(label, params, grads, names an error may give)."""
  a, b = _arr(3), _arr(2, 2, seed=1)
  yield "None leaf (frozen param)", {"w": a, "frozen": None}, \
      {"w": a, "frozen": None}, ()
  yield "None gradient for an array param", {"w": a, "b": b}, \
      {"w": a, "b": None}, ()
  yield "empty dict", {}, {}, ()
  yield "empty list", [], [], ()
  yield "nested empty containers", {"a": {}, "b": [], "c": ()}, \
      {"a": {}, "b": [], "c": ()}, ()
  nested = {"t": (a, {"d": b}), "nt": Pair(a * 2, b), "l": [a + 1]}
  yield "nested tuple/dict/NamedTuple/list", nested, \
      jax.tree.map(lambda x: -x, nested), ()
  box = Box(a, {"inner": b})
  yield "custom pytree node", box, jax.tree.map(lambda x: 0.3 * x, box), ()
  scalars = {"s": jnp.float32(1.5), "py": 2.0}
  yield "scalar leaves (0-d array, Python float)", scalars, \
      {"s": jnp.float32(-0.5), "py": 0.25}, ()
  empty = {"e": jnp.zeros((0,)), "e2": jnp.zeros((3, 0)), "w": a}
  yield "0-size arrays", empty, empty, ()
  yield "bare array (no container)", a, a * 0.5, ()
  yield "grads shape != params shape", {"w": a}, {"w": _arr(4)}, ("['w']",)
  yield "grads missing a leaf", {"w": a, "b": b}, {"w": a}, \
      ("tree", "structure")
  yield "grads float16, params float32", {"w": a}, \
      {"w": a.astype(jnp.float16)}, ()
  yield "grads bfloat16, params float32", {"w": a}, \
      {"w": a.astype(jnp.bfloat16)}, ()
  yield "grads int32", {"w": a}, {"w": jnp.arange(3)}, ("['w']",)
  yield "params int32 leaf", {"w": a, "step": jnp.arange(3)}, \
      {"w": a, "step": jnp.zeros(3)}, ("['step']",)
  yield "params bool leaf", {"w": a, "flag": jnp.array([True])}, \
      {"w": a, "flag": jnp.zeros(1)}, ("['flag']",)
  yield "grads complex, params real", {"w": a}, \
      {"w": a.astype(jnp.complex64)}, ("['w']",)
  yield "NumPy float64 params and grads", {"w": np.cos(np.arange(3.0))}, \
      {"w": np.sin(np.arange(3.0))}, ()


TREE_TRANSFORMS = {
    "rmsprop": lambda: optax_rmsprop.rmsprop(
        0.1, centered=True, momentum=0.9, nesterov=True,
        bias_correction=True, coupled_weight_decay=0.01,
        decoupled_weight_decay=0.01),
    "scale_by_rms": lambda: optax_rmsprop.scale_by_rms(centered=True),
    "momentum": lambda: optax_rmsprop.momentum(0.9, nesterov=True),
    "add_decoupled_weight_decay": lambda: (
        optax_rmsprop.add_decoupled_weight_decay(0.1, 0.5)),
    "torch_rmsprop": lambda: optax_rmsprop.torch_rmsprop(
        momentum=0.9, weight_decay=0.01, centered=True),
    "keras_rmsprop": lambda: optax_rmsprop.keras_rmsprop(
        momentum=0.9, weight_decay=0.01, clipnorm=1.0, use_ema=True),
    "tf1_rmsprop": lambda: optax_rmsprop.tf1_rmsprop(
        0.1, momentum=0.9, centered=True, sparse=True),
    "timm_rmsprop_tf": lambda: optax_rmsprop.timm_rmsprop_tf(
        momentum=0.9, weight_decay=0.01, decoupled_decay=True, caution=True),
    "dqn_rmsprop": lambda: optax_rmsprop.dqn_rmsprop(weight_cost=0.01),
    "stack_leaves": lambda: optax_rmsprop.tools.stack_leaves(
        optax_rmsprop.rmsprop(0.1, momentum=0.9)),
    "lazy_rows": lambda: optax_rmsprop.tools.lazy_rows(
        optax_rmsprop.rmsprop(0.1, momentum=0.9)),
    "cautious": lambda: optax_rmsprop.tools.cautious(
        optax_rmsprop.rmsprop(0.1, momentum=0.9)),
}


def tree_cases():
  cases = []
  for function, make in TREE_TRANSFORMS.items():
    for label, params, grads, names in _trees():
      cases.append(Case(
          function, "tree", label,
          lambda m=make, p=params, g=grads: exercise(m(), p, g), names))
  return cases


def _same_values(a, b):
  leaves = lambda t: jax.tree.leaves(t, is_leaf=lambda x: x is None)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(leaves(a), leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def sharding_cases():
  """init_sharded and state_shardings: bad transforms, odd params trees."""
  tx = optax_rmsprop.rmsprop(0.1, momentum=0.9, bias_correction=True)

  def init_sharded(tx, params):
    state = optax_rmsprop.tools.init_sharded(tx, params)
    _same_values(state, tx.init(params))
    shardings = optax_rmsprop.tools.state_shardings(tx, params)
    assert jax.tree.structure(shardings) == jax.tree.structure(state)
    return True

  cases = []
  for label, value in [("None", None), ("str", "rmsprop"),
                       ("factory, not a transform", optax_rmsprop.rmsprop)]:
    for function in ("init_sharded", "state_shardings"):
      f = getattr(optax_rmsprop.tools, function)
      cases.append(Case(function, "tx", label,
                        lambda f=f, v=value: f(v, PARAMS), ("tx",)))
  for label, params, _, names in _trees():
    if "grads" in label:
      continue  # no gradients here
    cases.append(Case("init_sharded", "tree", label,
                      lambda p=params: init_sharded(tx, p), names))
  return cases


def _stats_state(tx=None):
  tx = tx or optax_rmsprop.rmsprop(0.1, momentum=0.9)
  state = tx.init(PARAMS)
  _, state = tx.update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
  return state


def inspection_cases():
  state = _stats_state()

  def stats(**kw):
    args = dict(opt_state=state, learning_rate=0.1, eps=1e-8)
    args.update(kw)
    out = optax_rmsprop.rms_stats(**args)
    assert out and all(jnp.ndim(v) == 0 for v in out.values())
    return _finite(out)

  cases = _transform_cases(
      "rms_stats", lambda **kw: kw, ["learning_rate", "eps", "decay"],
      ["eps_in_sqrt", "per_leaf"], use=lambda kw: stats(**kw),
      extra=[("quantiles", "[1.5]", [1.5]), ("quantiles", "str", "median"),
             ("quantiles", "None", None), ("quantiles", "[NaN]", [math.nan]),
             ("quantiles", "()", ()),
             ("quantiles", "np.linspace(0, 1, 5)", np.linspace(0, 1, 5)),
             ("quantiles", "2-D array", np.full((1, 2), 0.5)),
             ("quantiles", "repeated", (0.5, 0.5))])
  for label, value in [
      ("None", None), ("str", "state"), ("empty tuple", ()),
      ("no RMS state (optax.sgd)", optax.sgd(0.1).init(PARAMS)),
      ("a bare array", jnp.ones(3))]:
    cases.append(Case("rms_stats", "opt_state", label,
                      lambda v=value: stats(opt_state=v), ("opt_state", "RMS")))
  for label, params in [("wrong structure", {"w": PARAMS["w"]}),
                        ("None for a leaf", {**PARAMS, "w": None}),
                        ("str", "params")]:
    stacked = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1))
    cases.append(Case(
        "rms_stats", "params", label,
        lambda p=params, s=_stats_state(stacked): stats(opt_state=s, params=p),
        ("params",)))
  return cases


def _torch():
  import torch  # pylint: disable=import-outside-toplevel

  return torch


def torch_cases():
  torch = _torch()
  params = {"w": jnp.ones(3), "b": jnp.ones(2)}
  w, b = torch.ones(3), torch.ones(2)
  opt = torch.optim.RMSprop([w, b], lr=0.01, momentum=0.9)
  w.grad, b.grad = torch.ones(3), torch.ones(2)
  opt.step()
  sd = opt.state_dict()
  tx = optax_rmsprop.torch_rmsprop(0.01, momentum=0.9)

  def from_sd(**kw):
    args = dict(state_dict=sd, tx=tx, params=params)
    args.update(kw)
    state = optax_rmsprop.torch.from_torch_state_dict(**args)
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    return _finite(state)

  def to_sd(**kw):
    state = tx.init(params)
    args = dict(opt_state=state, params=params,
                param_groups=sd["param_groups"], step=1)
    args.update(kw)
    out = optax_rmsprop.torch.to_torch_state_dict(**args)
    opt.load_state_dict(out)
    return True

  bad_sd = {"state": {0: {"square_avg": torch.ones(4), "step": torch.tensor(1.),
                          "momentum_buffer": torch.ones(4)}},
            "param_groups": sd["param_groups"]}
  cases = []
  for label, value in [("None", None), ("str", "sd"), ("empty dict", {}),
                       ("state of the wrong shape", bad_sd)]:
    cases.append(Case("from_torch_state_dict", "state_dict", label,
                      lambda v=value: from_sd(state_dict=v),
                      ("state_dict", "square_avg", "shape", "param_groups")))
  for label, value in [("None", None), ("str", "tx"),
                       ("no momentum (state has a buffer)",
                        optax_rmsprop.torch_rmsprop(0.01))]:
    cases.append(Case("from_torch_state_dict", "tx", label,
                      lambda v=value: from_sd(tx=v),
                      ("tx", "momentum_buffer", "momentum")))
  for label, value in [("None", None), ("one leaf fewer", {"w": jnp.ones(3)}),
                       ("wrong shape", {"w": jnp.ones(4), "b": jnp.ones(2)})]:
    cases.append(Case("from_torch_state_dict", "params", label,
                      lambda v=value: from_sd(params=v),
                      ("params", "shape", "parameters", "tree")))
  for label, value in [("str", "x"), ("wrong structure", {"w": 0})]:
    cases.append(Case("from_torch_state_dict", "names", label,
                      lambda v=value: from_sd(names=v), ("names",)))
  for label, value in [("None", None), ("str", "state")]:
    cases.append(Case("to_torch_state_dict", "opt_state", label,
                      lambda v=value: to_sd(opt_state=v),
                      ("opt_state", "state")))
  for label, value in [("None", None), ("str", "groups"), ("empty list", [])]:
    cases.append(Case("to_torch_state_dict", "param_groups", label,
                      lambda v=value: to_sd(param_groups=v),
                      ("param_groups", "parameters")))
  for label, value in [("str", "1"), ("negative", -1), ("float 1.5", 1.5),
                       ("bool", True)]:
    cases.append(Case("to_torch_state_dict", "step", label,
                      lambda v=value: to_sd(step=v), ("step",)))
  for label, value in [("one leaf fewer", {"w": jnp.ones(3)})]:
    cases.append(Case("to_torch_state_dict", "params", label,
                      lambda v=value: to_sd(params=v),
                      ("params", "tree", "parameters")))

  return cases


def param_group_cases():
  params = {"w": jnp.ones(3), "b": jnp.ones(2)}
  cases = []

  def groups(**kw):
    args = dict(groups=[{"weight_decay": 0.1}, {"lr": 0.1}],
                labels={"w": 0, "b": 1}, lr=0.01)
    args.update(kw)
    return exercise(optax_rmsprop.torch.torch_param_groups(**args), params,
                    flat_check=False)

  for label, value in [("None", None), ("str", "groups"),
                       ("group with bad lr", [{"lr": "x"}, {}]),
                       ("unknown hyperparameter", [{"betas": 1}, {}]),
                       ("one group too few", [{}])]:
    cases.append(Case("torch_param_groups", "groups", label,
                      lambda v=value: groups(groups=v),
                      ("groups", "lr", "betas", "label")))
  for label, value in [("None", None), ("label out of range", {"w": 0, "b": 5}),
                       ("wrong structure", {"w": 0})]:
    cases.append(Case("torch_param_groups", "labels", label,
                      lambda v=value: groups(labels=v),
                      ("labels", "label", "5")))
  cases += _transform_cases(
      "torch_param_groups", lambda **kw: kw, ["lr"],
      use=lambda kw: groups(**kw))
  return cases


def keras_cases():
  import keras  # pylint: disable=import-outside-toplevel

  w = keras.Variable(np.ones(3, np.float32))
  opt = keras.optimizers.RMSprop(0.01, momentum=0.9)
  opt.apply([np.ones(3, np.float32)], [w])
  params = [w.numpy()]
  tx = optax_rmsprop.keras_rmsprop(0.01, momentum=0.9)

  def from_kv(**kw):
    args = dict(optimizer=opt, params=params, tx=tx)
    args.update(kw)
    state = optax_rmsprop.keras.from_keras_variables(**args)
    _, state = tx.update([jnp.ones(3)], state, params)
    return _finite(state)

  def to_kv(**kw):
    args = dict(state=tx.init(params), optimizer=opt, iterations=1)
    args.update(kw)
    values = optax_rmsprop.keras.to_keras_variables(**args)
    assert len(values) == len(opt.variables)
    return True

  cases = []
  for label, value in [("None", None), ("str", "opt"),
                       ("a torch-like object", object())]:
    cases.append(Case("from_keras_variables", "optimizer", label,
                      lambda v=value: from_kv(optimizer=v), ("optimizer",)))
    cases.append(Case("to_keras_variables", "optimizer", label,
                      lambda v=value: to_kv(optimizer=v), ("optimizer",)))
  for label, value in [("None", None), ("one leaf more", params * 2),
                       ("wrong shape", [np.ones(4, np.float32)])]:
    cases.append(Case("from_keras_variables", "params", label,
                      lambda v=value: from_kv(params=v),
                      ("params", "shape", "variables")))
  for label, value in [("None", None), ("str", "tx"),
                       ("centered (Keras run is not)",
                        optax_rmsprop.keras_rmsprop(0.01, momentum=0.9,
                                                    centered=True))]:
    cases.append(Case("from_keras_variables", "tx", label,
                      lambda v=value: from_kv(tx=v),
                      ("tx", "centered", "average_gradient", "variables")))
  for label, value in [("str", "vars"), ("wrong length", [np.ones(3)])]:
    cases.append(Case("from_keras_variables", "optimizer_variables", label,
                      lambda v=value: from_kv(optimizer_variables=v),
                      ("optimizer_variables", "variables")))
  for label, value in [("None", None), ("str", "state")]:
    cases.append(Case("to_keras_variables", "state", label,
                      lambda v=value: to_kv(state=v), ("state",)))
  for label, value in [("str", "1"), ("negative", -1), ("float 1.5", 1.5),
                       ("bool", True)]:
    cases.append(Case("to_keras_variables", "iterations", label,
                      lambda v=value: to_kv(iterations=v), ("iterations",)))
  return cases


FRAMEWORKS = ("torch", "keras")  # the converters' cases need them


def has(framework: str) -> bool:
  return importlib.util.find_spec(framework) is not None


def all_cases():
  cases = (hyperparameter_cases() + tree_cases() + sharding_cases()
           + inspection_cases() + param_group_cases())
  if has("torch"):
    cases += torch_cases()
  if has("keras"):
    cases += keras_cases()
  return cases


def stable_lines(text: str) -> list[str]:
  """The table without its error messages, whose wording (some of it
  jax's or a framework's) may change between versions."""
  return [line for line in text.splitlines() if not line.startswith("* ")]


# -- The table -----------------------------------------------------------------

SYMBOL = {"ok": "ok", "ok non-finite": "ok (inf)", "ValueError": "VE",
          "TypeError": "TE"}


def table(outcomes) -> str:
  by_function = collections.defaultdict(list)
  for o in outcomes:
    by_function[o.case.function].append(o)
  lines = [
      "# Fuzzed inputs",
      "",
      "<!-- Generated by `python tests/fuzz_harness.py`; "
      "tests/test_fuzz_inputs.py checks it is current. Do not edit. -->",
      "",
      "Every public function called with wrong hyperparameters and odd trees"
      " (`tests/fuzz_harness.py`). A cell is `ok` (it works: a transform's"
      " updates have the gradients' structure, shapes and dtypes, and equal"
      " those of the same leaves as a flat dict), `ok (inf)` (it works and"
      " the float32 arithmetic overflows, as it would in optax: a huge"
      " value), `VE` / `TE` (`ValueError` / `TypeError` whose message names"
      " the argument or leaf path; the messages are listed under each"
      " table), or `FAIL`.",
      "",
      f"{len(outcomes)} cases, "
      f"{sum(not o.passed for o in outcomes)} failing.",
  ]
  for function, group in by_function.items():
    lines += ["", f"## `{function}`", ""]
    hyper = [o for o in group if o.case.argument != "tree"]
    trees = [o for o in group if o.case.argument == "tree"]
    if hyper:
      lines += _grid(hyper)
    if trees:
      lines += ["", "| tree | outcome |", "|---|---|"]
      lines += [f"| {o.case.label} | {_cell(o)} |" for o in trees]
    messages = sorted({(o.kind, o.message) for o in group if o.message})
    if messages:
      lines += ["", "Messages:", ""]
      lines += [f"* {kind}: {_escape(m)}" for kind, m in messages]
  return "\n".join(lines) + "\n"


def _cell(o):
  return SYMBOL.get(o.kind, "FAIL")


def _escape(text):
  return text.replace("|", "\\|").replace("`", "'").replace("*", "\\*") \
      .replace("<", "&lt;").replace(">", "&gt;").replace("_", "\\_")


def _grid(outcomes):
  """A table per value set: rows are arguments, columns the values."""
  lines = []
  labels = []
  for o in outcomes:
    if o.case.label not in labels:
      labels.append(o.case.label)
  arguments = []
  for o in outcomes:
    if o.case.argument not in arguments:
      arguments.append(o.case.argument)
  cells = {(o.case.argument, o.case.label): _cell(o) for o in outcomes}
  # One table per group of arguments fuzzed with the same values.
  groups = collections.OrderedDict()
  for arg in arguments:
    key = tuple(label for label in labels if (arg, label) in cells)
    groups.setdefault(key, []).append(arg)
  for key, args in groups.items():
    lines += ["", "| argument | " + " | ".join(_escape(k) for k in key) + " |",
              "|---" * (len(key) + 1) + "|"]
    for arg in args:
      lines.append(f"| `{arg}` | " + " | ".join(cells[arg, k] for k in key)
                   + " |")
  return lines


def main(argv):
  outcomes = [run_case(c) for c in all_cases()]
  text = table(outcomes)
  if "--check" in argv:
    print(text)
  else:
    DOC.write_text(text)
  failing = [o for o in outcomes if not o.passed]
  for o in failing:
    print(f"FAIL {o.case.function} {o.case.argument} {o.case.label}:"
          f" {o.kind} {o.message}", file=sys.stderr)
  print(f"{len(outcomes)} cases, {len(failing)} failing", file=sys.stderr)
  return 1 if failing else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
