"""Every public transform and preset, crossed with optax's wrappers (issue #17).

Each case runs one transform (a public factory with a representative set of
arguments) under a wrapper chain (none, ``optax.inject_hyperparams`` with
every numeric hyperparameter injected, ``optax.masked`` with an all-True and
with a mixed prefix mask, ``optax.MultiSteps``, ``optax.apply_if_finite``,
:func:`optax_rmsprop.tools.stack_leaves` and a few stacks of them), in a mode
(eager, a Python loop of ``jax.jit(update)``, one ``jax.lax.scan``), on params
of a dtype (float32, bfloat16, float64 and float32 under x64, complex64) in a
tree (nested dicts; the same with a ``None`` gradient for a frozen param; the
empty tree). It asserts, at every step:

* ``update`` keeps the state's tree structure, leaf shapes and dtypes;
* updates have the gradients' structure (``None`` where the gradient is
  ``None``) and the params' dtypes and shapes;
* a frozen param's (``None`` gradient) state leaves do not move;
* the wrapped transform's updates and (where it has one) inner state equal
  those of the transform run without the wrapper, as the wrapper's semantics
  say (the reference: the plain transform run eagerly, op by op, on the
  gradients the wrappers pass it). Bit for bit in eager mode where the
  wrapper runs the same operations (none, ``masked``), else to a tolerance
  per dtype:

  - ``inject_hyperparams``: the same state structure as the plain transform
    (inside ``inner_state``); the numbers differ in the last bits by the
    hyperparameters being arrays (optax's own
    ``inject_hyperparams(optax.rmsprop)`` is not bit for bit
    ``optax.rmsprop`` either: ``1 - decay`` is folded in float64 for a Python
    number, rounded in float32 for an array). For bfloat16 params they are
    injected as float32 (``hyperparam_dtype``; optax's default, the params'
    dtype, would make momentum 0.9 a 0.90234375);
  - ``masked`` with an all-True prefix mask: the plain transform; with a
    mixed prefix mask: the masked-in leaves those of the plain transform run
    on that subtree alone, the others the gradient itself;
  - ``MultiSteps(tx, 2)``: zeros at the accumulating steps, and at every 2nd
    step the plain transform's update for the mean gradient (optax's running
    mean, in the params' dtype), its inner state the plain one's;
  - ``apply_if_finite(tx, 3)`` with a NaN gradient at step 1: a zero update
    and unchanged inner state there, otherwise the plain transform run
    without that step;
  - ``stack_leaves``: the plain transform's updates (its docstring: an FMA
    may round differently in the stacked layout, an ulp per step);
  - compiled runs (a loop of ``jax.jit(update)``, one ``jax.lax.scan``):
    XLA may contract a multiply-add into an FMA, and differently in a loop
    body (a scan and a jit loop of optax's own ``optax.rmsprop`` differ in
    the last bit too), so they are compared to the tolerance; bit for bit,
    they are compared with optax's own transform (below).

* For the transforms with an optax counterpart (``rmsprop`` with optax's
  arguments, ``scale_by_rms``, ``momentum``) on float32, the whole run is bit
  for bit optax's transform under the same wrappers and mode, state included
  (not with a None gradient, where optax's state drops the frozen leaf).

Transforms that do not support complex params must say so at ``init``.

By default a pairwise covering subset of the cross product runs (every pair
of values of any two axes appears in some case); ``-m slow`` runs all of it.
``pytest -s`` prints the number of cases.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop
from public_api import public_names

STEPS = 4
NAN_STEP = 1  # apply_if_finite cases get a NaN gradient at this step
BF16 = jnp.bfloat16


def _is_none(x):
  return x is None


# ---------------------------------------------------------------------------
# The transforms: every public factory, one or more argument sets each.
# ---------------------------------------------------------------------------


def _big(tree):
  """A weight-decay mask / label function that survives stack_leaves (a
  stacked leaf keeps its size) and optax.masked (MaskedNode is empty)."""
  return jax.tree.map(lambda x: x.size > 1, tree)


def _lazy_rmsprop(learning_rate, decay, eps, initial_scale, momentum):
  return optax_rmsprop.tools.lazy_rows(
      optax_rmsprop.rmsprop(
          learning_rate, decay, eps, initial_scale, momentum=momentum
      )
  )


def _stacked_rmsprop(
    learning_rate, decay, eps, initial_scale, momentum, decoupled_weight_decay
):
  return optax_rmsprop.tools.stack_leaves(
      optax_rmsprop.rmsprop(
          learning_rate,
          decay,
          eps,
          initial_scale,
          centered=True,
          momentum=momentum,
          decoupled_weight_decay=decoupled_weight_decay,
      ),
      max_group_size=2,
  )


def _cautious_rmsprop(learning_rate, decay, eps, initial_scale, momentum, floor):
  return optax_rmsprop.tools.cautious(
      optax_rmsprop.rmsprop(
          learning_rate, decay, eps, initial_scale, momentum=momentum
      ),
      floor=floor,
  )


def _torch_groups(lr_a, lr_b, momentum_b, alpha, eps, weight_decay):
  return optax_rmsprop.torch.torch_param_groups(
      [{"lr": lr_a}, {"lr": lr_b, "momentum": momentum_b, "centered": True}],
      labels=lambda p: jax.tree.map(lambda x: int(x.size > 4), p),
      alpha=alpha,
      eps=eps,
      weight_decay=weight_decay,
  )


@dataclasses.dataclass(frozen=True)
class Spec:
  """A public factory called with ``kwargs``."""

  id: str
  public: str  # its public name below optax_rmsprop ("tools.x")
  factory: Callable[..., optax.GradientTransformation]
  kwargs: dict[str, Any]
  static: tuple[str, ...] = ()  # not injectable: they shape the state
  complex_ok: bool = True
  # Elementwise (per element, no per-leaf norm): stack_leaves is exact.
  elementwise: bool = True
  # optax's own factory taking the same kwargs: bit for bit on float32.
  optax_ref: Optional[Callable[..., optax.GradientTransformation]] = None

  def make(
      self, inject: bool = False, dtype=None
  ) -> optax.GradientTransformation:
    if inject:
      return optax.inject_hyperparams(
          self.factory,
          static_args=self.static,
          hyperparam_dtype=_hyperparam_dtype(dtype),
      )(**self.kwargs)
    return self.factory(**self.kwargs)

  def make_optax(
      self, inject: bool = False, dtype=None
  ) -> optax.GradientTransformation:
    assert self.optax_ref is not None
    if inject:
      return optax.inject_hyperparams(
          self.optax_ref, hyperparam_dtype=_hyperparam_dtype(dtype)
      )(**self.kwargs)
    return self.optax_ref(**self.kwargs)


def _hyperparam_dtype(dtype):
  """optax stores injected hyperparameters in the params' dtype: in
  bfloat16, momentum 0.9 would be 0.90234375, a different optimizer; they
  are float32 there (the dtype the transforms compute bfloat16 in)."""
  if dtype is not None and jnp.dtype(dtype) == jnp.dtype(BF16):
    return jnp.float32
  return None


R = optax_rmsprop
SPECS = (
    Spec(
        "rmsprop-optax",
        "rmsprop",
        R.rmsprop,
        dict(
            learning_rate=0.05, decay=0.9, eps=1e-8, initial_scale=0.0,
            momentum=0.9, nesterov=True, bias_correction=True,
        ),
        optax_ref=optax.rmsprop,
    ),
    Spec(
        "rmsprop-optax-centered",
        "rmsprop",
        R.rmsprop,
        dict(
            learning_rate=0.05, decay=0.9, eps=1e-8, initial_scale=0.1,
            eps_in_sqrt=False, centered=True,
        ),
        optax_ref=optax.rmsprop,
    ),
    Spec(
        "rmsprop-all",
        "rmsprop",
        R.rmsprop,
        dict(
            learning_rate=0.05, decay=0.8, eps=1e-6, initial_scale=0.1,
            eps_in_sqrt=False, centered=True, momentum=0.9, nesterov=True,
            bias_correction=True, decoupled_weight_decay=0.01,
            coupled_weight_decay=0.02, weight_decay_mask=_big, maximize=True,
        ),
        static=("weight_decay_mask",),
    ),
    Spec(
        "rmsprop-lowp-safe",
        "rmsprop",
        R.rmsprop,
        dict(
            learning_rate=0.05, decay=0.9, eps=1e-8, initial_scale=0.0,
            centered=True, momentum=0.5, lr_in_momentum=False,
            nu_dtype=BF16, momentum_dtype=BF16, safe_numerics=True,
        ),
    ),
    Spec(
        "scale_by_rms-optax",
        "scale_by_rms",
        R.scale_by_rms,
        dict(decay=0.9, eps=1e-8, initial_scale=0.0),
        optax_ref=optax.scale_by_rms,
    ),
    Spec(
        "scale_by_rms-all",
        "scale_by_rms",
        R.scale_by_rms,
        dict(
            decay=0.95, eps=1e-7, initial_scale=1.0, eps_in_sqrt=False,
            centered=True, bias_correction=True, nu_dtype=BF16,
            safe_numerics=True,
        ),
    ),
    Spec(
        "momentum-optax",
        "momentum",
        R.momentum,
        dict(decay=0.9),
        optax_ref=lambda decay: optax.trace(decay),
    ),
    Spec(
        "momentum-nesterov-bf16",
        "momentum",
        R.momentum,
        dict(decay=0.5, nesterov=True, accumulator_dtype=BF16),
    ),
    Spec(
        "add_decoupled_weight_decay",
        "add_decoupled_weight_decay",
        R.add_decoupled_weight_decay,
        dict(learning_rate=0.1, weight_decay=0.01, mask=_big),
        static=("mask",),
    ),
    Spec(
        "torch_rmsprop",
        "torch_rmsprop",
        R.torch_rmsprop,
        dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0),
    ),
    Spec(
        "torch_rmsprop-all",
        "torch_rmsprop",
        R.torch_rmsprop,
        dict(
            lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.9,
            centered=True, maximize=True,
        ),
    ),
    Spec(
        "keras_rmsprop",
        "keras_rmsprop",
        R.keras_rmsprop,
        dict(
            learning_rate=0.01, rho=0.9, momentum=0.9, epsilon=1e-7,
            centered=True, weight_decay=0.01, global_clipnorm=1.0,
            ema_momentum=0.99, loss_scale_factor=2.0,
        ),
    ),
    Spec(
        "keras_rmsprop-ema-accum",
        "keras_rmsprop",
        R.keras_rmsprop,
        dict(
            learning_rate=0.01, rho=0.9, momentum=0.0, epsilon=1e-7,
            clipvalue=0.5, use_ema=True, ema_momentum=0.9,
            ema_overwrite_frequency=2, gradient_accumulation_steps=2,
        ),
        static=("ema_overwrite_frequency", "gradient_accumulation_steps"),
    ),
    Spec(
        "keras_rmsprop-clipnorm",
        "keras_rmsprop",
        R.keras_rmsprop,
        dict(
            learning_rate=0.01, rho=0.9, momentum=0.5, epsilon=1e-7,
            clipnorm=1.0, ema_momentum=0.99,
        ),
        elementwise=False,  # a per-leaf norm sees stack_leaves' groups
    ),
    Spec(
        "tf1_rmsprop",
        "tf1_rmsprop",
        R.tf1_rmsprop,
        dict(learning_rate=0.01, decay=0.9, momentum=0.9, epsilon=1e-10),
    ),
    Spec(
        "tf1_rmsprop-centered-sparse",
        "tf1_rmsprop",
        R.tf1_rmsprop,
        dict(
            learning_rate=0.01, decay=0.9, momentum=0.5, epsilon=1e-10,
            centered=True, sparse=True,
        ),
    ),
    Spec(
        "timm_rmsprop_tf",
        "timm_rmsprop_tf",
        R.timm_rmsprop_tf,
        dict(
            lr=0.01, alpha=0.9, eps=1e-10, weight_decay=0.01, momentum=0.9,
            decoupled_decay=True, caution=True,
        ),
        elementwise=False,  # caution's kept fraction is per leaf
    ),
    Spec(
        "timm_rmsprop_tf-centered",
        "timm_rmsprop_tf",
        R.timm_rmsprop_tf,
        dict(
            lr=0.01, alpha=0.9, eps=1e-10, weight_decay=0.01, momentum=0.5,
            centered=True, decoupled_decay=True, corrected_weight_decay=True,
            lr_in_momentum=False, max_lr=0.1,
        ),
    ),
    Spec(
        "dqn_rmsprop",
        "dqn_rmsprop",
        R.dqn_rmsprop,
        dict(learning_rate=0.00025, decay=0.95, eps=0.01, weight_cost=0.01),
    ),
    Spec(
        "lazy_rows",
        "tools.lazy_rows",
        _lazy_rmsprop,
        dict(learning_rate=0.05, decay=0.9, eps=1e-8, initial_scale=0.0,
             momentum=0.9),
    ),
    Spec(
        "stack_leaves",
        "tools.stack_leaves",
        _stacked_rmsprop,
        dict(
            learning_rate=0.05, decay=0.9, eps=1e-8, initial_scale=0.1,
            momentum=0.9, decoupled_weight_decay=0.01,
        ),
    ),
    Spec(
        "cautious",
        "tools.cautious",
        _cautious_rmsprop,
        dict(
            learning_rate=0.05, decay=0.9, eps=1e-8, initial_scale=0.0,
            momentum=0.9, floor=1e-3,
        ),
        elementwise=False,  # the kept fraction is per leaf
    ),
    Spec(
        "torch_param_groups",
        "torch.torch_param_groups",
        _torch_groups,
        dict(lr_a=0.01, lr_b=0.02, momentum_b=0.9, alpha=0.99, eps=1e-8,
             weight_decay=0.01),
    ),
)
SPECS_BY_ID = {s.id: s for s in SPECS}

# Public names that are not transforms or presets, and why.
NOT_TRANSFORMS = {
    "tools.StackLeavesState": "state class",
    "keras.from_keras_variables": "state conversion",
    "keras.to_keras_variables": "state conversion",
    "torch.from_torch_state_dict": "state conversion",
    "torch.to_torch_state_dict": "state conversion",
    "tools.init_sharded": "sharded init of a transform's state",
    "tools.state_shardings": "shardings of a transform's state",
    "rms_stats": "inspection of a state",
    "torch.torch_onecycle_schedules": "learning-rate schedules",
}


def test_every_public_transform_is_covered():
  """A new public transform or preset must be added to SPECS (or, if it is
  not a transform, to NOT_TRANSFORMS)."""
  covered = {s.public for s in SPECS}
  unknown = set(public_names()) - covered - set(NOT_TRANSFORMS)
  assert not unknown, f"add to SPECS in {__file__}: {sorted(unknown)}"
  stale = (covered | set(NOT_TRANSFORMS)) - set(public_names())
  assert not stale, f"no longer public: {sorted(stale)}"


def _numeric_parameters(fn) -> tuple[set[str], set[str]]:
  """(params with a numeric default, params that may be a number)."""
  always, optional = set(), set()
  for name, p in inspect.signature(fn).parameters.items():
    annotation = str(p.annotation)
    if isinstance(p.default, (int, float)) and not isinstance(
        p.default, bool
    ):
      always.add(name)
    elif "ArrayLike" in annotation or "ScalarOrSchedule" in annotation:
      optional.add(name)
  return always, optional


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_specs_pass_every_numeric_hyperparameter(spec):
  """Every numeric hyperparameter is passed explicitly (so that
  inject_hyperparams injects it): those with a numeric default in every
  argument set, the optional ones (None: off) in at least one."""
  always, optional = _numeric_parameters(spec.factory)
  missing = always - set(spec.kwargs) - set(spec.static)
  assert not missing, f"{spec.id}: pass {sorted(missing)}"
  if spec.factory in vars(optax_rmsprop).values():
    given = set()
    for s in SPECS:
      if s.factory is spec.factory:
        given |= set(s.kwargs)
    assert not optional - given, f"{spec.public}: cover {optional - given}"


# ---------------------------------------------------------------------------
# Params and gradients.
# ---------------------------------------------------------------------------

# Leaves of sizes 1 and 5 and a (3, 4) matrix, and two (2, 3) ones, so that
# stack_leaves stacks the frozen param with an active one.
SHAPES = {
    "dense": {"w": (3, 4), "b": (5,), "v": (2, 3)},
    "scale": (1,),
    "frozen": {"k": (2, 3)},
}
FROZEN_SHAPE = (2, 3)
ALL_TRUE_MASK = {"dense": True, "scale": True, "frozen": True}
PREFIX_MASK = {"dense": True, "scale": False, "frozen": True}

DTYPES = {
    # name: (params dtype, x64)
    "float32": (jnp.float32, False),
    "bfloat16": (BF16, False),
    "float64": (jnp.float64, True),
    "float32-x64": (jnp.float32, True),
    "complex64": (jnp.complex64, False),
}
TREES = ("nested", "frozen", "empty")
MODES = ("eager", "jit", "scan")


def _random(rng, shape, dtype):
  x = rng.normal(size=shape)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    x = x + 1j * rng.normal(size=shape)
  return jnp.asarray(x, dtype)


def _params(tree: str, dtype):
  if tree == "empty":
    return {}
  rng = np.random.default_rng(0)
  return jax.tree.map(
      lambda s: _random(rng, s, dtype), SHAPES, is_leaf=lambda x: type(x) is tuple
  )


def _grads(tree: str, dtype, nan: bool) -> list[Any]:
  if tree == "empty":
    return [{} for _ in range(STEPS)]
  rng = np.random.default_rng(1)
  out = []
  for t in range(STEPS):
    g = jax.tree.map(
        lambda s: _random(rng, s, dtype),
        SHAPES,
        is_leaf=lambda x: type(x) is tuple,
    )
    if tree == "frozen":
      g["frozen"]["k"] = None
    if nan and t == NAN_STEP:
      g["dense"]["b"] = g["dense"]["b"].at[2].set(jnp.nan)
    out.append(g)
  return out


# ---------------------------------------------------------------------------
# Running a transform.
# ---------------------------------------------------------------------------


def _apply(params, updates):
  """optax.apply_updates, with None updates (frozen params) skipped."""
  return jax.tree.map(
      lambda p, u: p if u is None else (p + u).astype(p.dtype),
      params,
      updates,
      is_leaf=_is_none,
  )


@dataclasses.dataclass
class Run:
  updates: list[Any]  # one tree per step
  states: list[Any]  # the initial state, then one per step


def _run(tx, params, grads, mode: str) -> Run:
  state = tx.init(params)
  states, updates = [state], []
  if mode == "scan":

    def body(carry, g):
      state, params = carry
      u, state = tx.update(g, state, params)
      return (state, _apply(params, u)), (u, state)

    xs = jax.tree.map(lambda *x: jnp.stack(x), *grads)
    scan = lambda c, xs: jax.lax.scan(body, c, xs, length=len(grads))
    _, (us, ss) = jax.jit(scan)(
        (state, params), xs
    )
    for t in range(len(grads)):
      updates.append(jax.tree.map(lambda x: x[t], us))
      states.append(jax.tree.map(lambda x: x[t], ss))
    return Run(updates, states)

  def step(g, state, params):
    u, state = tx.update(g, state, params)
    return u, state, _apply(params, u)

  if mode == "jit":
    step = jax.jit(step)
  for g in grads:
    u, state, params = step(g, state, params)
    updates.append(u)
    states.append(state)
  return Run(updates, states)


# ---------------------------------------------------------------------------
# Wrappers and what each should give.
# ---------------------------------------------------------------------------


def _mask(full_mask, params):
  """``full_mask`` for ``params``' top-level keys: a prefix of the tree."""
  return {k: full_mask[k] for k in params}


def _subtree(tree, mask):
  return {k: v for k, v in tree.items() if mask.get(k, False)}


def _running_mean(grads):
  """optax.MultiSteps' mean of each pair, in the gradients' dtype."""
  means = []
  for pair in zip(grads[0::2], grads[1::2]):
    acc = jax.tree.map(jnp.zeros_like, pair[0])
    for n, g in enumerate(pair):
      acc = jax.tree.map(
          lambda g, a, n=n: a + (g - a) / (jnp.asarray(n, jnp.int32) + 1),
          g,
          acc,
      )
    means.append(acc)
  return means


@dataclasses.dataclass
class Expected:
  updates: Optional[list[Any]]  # None: not comparable
  # The inner-most transform's state at each step (initial first), or None
  # where the wrapped state does not hold it in a comparable form.
  states: Optional[list[Any]]
  exact: bool  # bit for bit


def _unwrap(wrapper: str, state):
  """The wrapped transform's state inside ``wrapper``'s."""
  if wrapper in ("inject", "masked_all", "masked_prefix", "if_finite"):
    return state.inner_state
  if wrapper == "multisteps":
    return state.inner_opt_state
  raise AssertionError(wrapper)


def _wrap(wrapper: str, tx, dtype, params):
  if wrapper == "masked_all":
    return optax.masked(tx, _mask(ALL_TRUE_MASK, params))
  if wrapper == "masked_prefix":
    return optax.masked(tx, _mask(PREFIX_MASK, params))
  if wrapper == "multisteps":
    # The accumulator in the params' dtype (its float32 default drops the
    # imaginary part of a complex gradient and rounds float64 ones).
    return optax.MultiSteps(tx, 2, accumulator_dtype=dtype)
  if wrapper == "if_finite":
    return optax.apply_if_finite(tx, 3)
  if wrapper == "stack":
    return optax_rmsprop.tools.stack_leaves(tx, max_group_size=2)
  raise AssertionError(wrapper)


def _build(spec: Spec, wrappers: tuple[str, ...], dtype, params, use_optax=False):
  """``wrappers[0](wrappers[1](... spec))``; "inject" is innermost-capable:
  it is applied to the factory where it appears."""
  inject = "inject" in wrappers
  tx = spec.make_optax(inject, dtype) if use_optax else spec.make(inject, dtype)
  for w in reversed(wrappers):
    if w != "inject":
      tx = _wrap(w, tx, dtype, params)
  return tx


_REFERENCE_CACHE: dict[Any, Run] = {}


def _reference_run(spec, params, grads, key) -> Run:
  if key not in _REFERENCE_CACHE:
    _REFERENCE_CACHE[key] = _run(spec.make(), params, grads, "eager")
  return _REFERENCE_CACHE[key]


def _expected(spec, wrappers, params, grads, key) -> Expected:
  """What ``wrappers`` around ``spec`` should give on ``grads``: from the
  plain transform, run as a jitted loop on the gradients the wrappers pass
  it. ``key`` identifies (params, grads) for the cache."""
  if not wrappers:
    run = _reference_run(spec, params, grads, key)
    return Expected(run.updates, run.states, True)
  w, rest = wrappers[0], wrappers[1:]
  if w == "inject":
    inner = _expected(spec, rest, params, grads, key)
    # Traced (array) hyperparameters change the last bits (module doc).
    return Expected(inner.updates, inner.states, False)
  if w == "masked_all":
    return _expected(spec, rest, params, grads, key)
  if w == "masked_prefix":
    inner = _expected(
        spec,
        rest,
        _subtree(params, PREFIX_MASK),
        [_subtree(g, PREFIX_MASK) for g in grads],
        key + ("masked_prefix",),
    )
    updates = None
    if inner.updates is not None:
      updates = [{**g, **u} for g, u in zip(grads, inner.updates)]
    return Expected(updates, inner.states, inner.exact)
  if w == "multisteps":
    inner = _expected(spec, rest, params, _running_mean(grads), key + (w,))
    # Not bit for bit: the mean is computed in the update's program, where
    # XLA may contract it with the update's arithmetic into an FMA.
    updates = []
    for t in range(len(grads)):
      if t % 2:
        updates.append(inner.updates[t // 2])
      else:
        updates.append(jax.tree.map(jnp.zeros_like, grads[t]))
    states = None
    if inner.states is not None:
      states = [inner.states[t // 2] for t in range(len(grads) + 1)]
    return Expected(updates, states, False)
  if w == "if_finite":
    finite = [
        all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(g))
        for g in grads
    ]
    kept = [g for g, ok in zip(grads, finite) if ok]
    inner = _expected(spec, rest, params, kept, key + (w,))
    updates, states, k = [], [], 0
    states = [inner.states[0]] if inner.states is not None else None
    for g, ok in zip(grads, finite):
      if ok:
        updates.append(inner.updates[k])
        k += 1
      else:
        updates.append(jax.tree.map(jnp.zeros_like, g))
      if states is not None:
        states.append(inner.states[k])
    # Not bit for bit: the inner update runs compiled, in a lax.cond.
    return Expected(updates, states, False)
  if w == "stack":
    if not spec.elementwise:
      # A per-leaf quantity (a norm, caution's kept fraction) sees the
      # stacked groups (stack_leaves' docstring): only the invariants hold.
      return Expected(None, None, False)
    inner = _expected(spec, rest, params, grads, key)
    # An FMA may round differently in the stacked layout (its docstring).
    return Expected(inner.updates, None, False)
  raise AssertionError(w)


# ---------------------------------------------------------------------------
# Comparisons.
# ---------------------------------------------------------------------------

RTOL = {
    jnp.dtype(jnp.float32): 1e-5,
    jnp.dtype(jnp.complex64): 1e-5,
    jnp.dtype(jnp.float64): 1e-12,
    jnp.dtype(BF16): 3e-2,
}


def _structure(tree):
  return jax.tree.structure(tree, is_leaf=_is_none)


def _signature(tree):
  """Structure, shapes and dtypes of a state or update tree."""
  leaves = jax.tree.leaves(tree)
  return _structure(tree), [(jnp.shape(x), jnp.result_type(x)) for x in leaves]


def _bits(x):
  """The bytes of ``x``, with -0 as +0 (zero updates of optax's wrappers
  come as either)."""
  x = np.asarray(x).reshape(-1)
  if jnp.issubdtype(x.dtype, jnp.inexact):
    x = x + np.zeros((), x.dtype)
  return x.view(np.uint8)


def assert_same(actual, expected, exact: bool, what: str):
  """Same structure (None leaves included), shapes, dtypes, and values: bit
  for bit (``exact``) or to the dtype's tolerance."""
  assert _structure(actual) == _structure(expected), (
      f"{what}: structure\n{_structure(actual)}\n!=\n{_structure(expected)}"
  )
  flat_a = jax.tree.leaves_with_path(actual)
  flat_e = jax.tree.leaves(expected)
  for (path, a), e in zip(flat_a, flat_e):
    where = f"{what} at {jax.tree_util.keystr(path)}"
    a, e = np.asarray(a), np.asarray(e)
    assert a.dtype == e.dtype and a.shape == e.shape, (
        f"{where}: {a.dtype}{a.shape} != {e.dtype}{e.shape}"
    )
    if exact or not jnp.issubdtype(a.dtype, jnp.inexact):
      if not np.array_equal(_bits(a), _bits(e)):
        np.testing.assert_array_equal(a, e, err_msg=where + " (bits)")
        raise AssertionError(f"{where}: equal values, different bits")
    else:
      rtol = RTOL[jnp.dtype(a.dtype)]
      wide = np.complex128 if np.iscomplexobj(a) else np.float64
      e_wide = e.astype(wide)
      # Relative to the leaf's largest value, and at least a few ulps of 1
      # (the params' scale: an update ema - params cancels).
      atol = max(
          rtol * float(np.max(np.abs(e_wide), initial=0.0)),
          4 * float(jnp.finfo(a.dtype).eps),
      )
      np.testing.assert_allclose(
          a.astype(wide), e_wide, rtol=rtol, atol=atol, err_msg=where
      )


def _frozen_state_leaves(state):
  """The state of the frozen param ``['frozen']['k']``: the leaves at its
  path, and in stack_leaves' states (no dict keys), its row of the stacked
  (2, 3) group, which it shares with ``['dense']['v']`` (second in order)."""
  out = []
  for path, x in jax.tree.leaves_with_path(state):
    if "['frozen']['k']" in jax.tree_util.keystr(path):
      out.append(x)
    elif jnp.shape(x)[-3:] == (2,) + FROZEN_SHAPE:
      out.append(x[..., 1, :, :])
  return out


# ---------------------------------------------------------------------------
# The cases.
# ---------------------------------------------------------------------------

WRAPPERS = (
    (),
    ("inject",),
    ("masked_all",),
    ("masked_prefix",),
    ("multisteps",),
    ("if_finite",),
    ("stack",),
    ("masked_prefix", "multisteps"),
    ("if_finite", "inject"),
    ("masked_prefix", "stack"),
)


def _wrapper_id(wrappers):
  return "+".join(wrappers) or "plain"


@dataclasses.dataclass(frozen=True)
class Case:
  spec: str
  wrappers: tuple[str, ...]
  dtype: str
  mode: str
  tree: str

  @property
  def id(self):
    return "-".join(
        (self.spec, _wrapper_id(self.wrappers), self.dtype, self.mode, self.tree)
    )


def _excluded(case: Case) -> Optional[str]:
  """Why a combination is not a case (optax's limits, not ours), or None."""
  if case.tree == "frozen" and "multisteps" in case.wrappers:
    return "optax.MultiSteps does not take None gradient leaves"
  return None


# Known bugs outside this test's reach (presets being reworked): each is
# an xfail(strict=True) so that it is seen, and noticed once fixed. (The
# empty tree has no leaf for a dtype bug to show on.)
KNOWN_BUGS: list[tuple[Callable[[Case], bool], str]] = [
]


def _axes():
  return {
      "spec": [s.id for s in SPECS],
      "wrappers": list(WRAPPERS),
      "dtype": list(DTYPES),
      "mode": list(MODES),
      "tree": list(TREES),
  }


def _all_cases() -> list[Case]:
  axes = _axes()
  cases = [Case(*values) for values in itertools.product(*axes.values())]
  return [c for c in cases if _excluded(c) is None]


# Relative cost of a transform's chain (compiling it, dispatching its ops).
_HEAVY = ("keras", "timm", "torch_param_groups", "tf1", "dqn", "lazy")


def _cost(case: Case) -> int:
  weight = 2 if case.spec.startswith(_HEAVY) else 1
  return weight * _mode_cost(case)


def _mode_cost(case: Case) -> int:
  """Rough run time: compiling (jit, scan) costs most; eagerly the
  primitives are compiled once per process, except the lax.cond of
  MultiSteps and apply_if_finite, compiled again at every step."""
  if case.mode == "jit":
    return 3
  if case.mode == "scan":
    return 4
  if {"multisteps", "if_finite"} & set(case.wrappers):
    return 8
  if "stack" in case.wrappers or case.spec == "stack_leaves":
    return 6  # eagerly, each stacked shape compiles every primitive anew
  return 1


@functools.lru_cache(maxsize=None)
def _pairwise_cases() -> tuple[Case, ...]:
  """A deterministic subset in which every allowed pair of values of two
  axes occurs, but for (argument set, wrappers), where every (public
  factory, wrappers) pair does: for each (factory, wrappers), the argument
  set and the other axes' values that cover the most pairs not yet covered
  (greedy), the cheapest among those."""
  axes = _axes()
  names = list(axes)
  allowed = _all_cases()
  public = {s.id: s.public for s in SPECS}

  def value(case, axis, other):
    v = getattr(case, axis)
    return public[v] if axis == "spec" and other == "wrappers" else v

  def pairs_of(c):
    return {
        ((a, value(c, a, b)), (b, value(c, b, a)))
        for a, b in itertools.combinations(names, 2)
    }

  uncovered = set().union(*(pairs_of(c) for c in allowed))
  by_head: dict[Any, list[Case]] = {}
  for c in allowed:
    by_head.setdefault((public[c.spec], c.wrappers), []).append(c)
  chosen = []
  for h, head in enumerate(sorted(by_head, key=str)):
    options = by_head[head]
    # Ties go to a different option for each head: no value is favoured.
    n = len(options)
    best = options[
        max(
            range(n),
            key=lambda i: (
                len(pairs_of(options[i]) & uncovered),
                -_cost(options[i]),
                -((i - 7 * h) % n),
            ),
        )
    ]
    chosen.append(best)
    uncovered -= pairs_of(best)
  while uncovered:  # pairs the heads could not reach
    best = max(
        allowed, key=lambda c: (len(pairs_of(c) & uncovered), -_cost(c))
    )
    chosen.append(best)
    uncovered -= pairs_of(best)
  return tuple(chosen)


def _params_of(cases):
  out = []
  for c in cases:
    marks = [
        pytest.mark.xfail(strict=True, reason=reason)
        for applies, reason in KNOWN_BUGS
        if applies(c)
    ]
    out.append(pytest.param(c, id=c.id, marks=marks))
  return out


def check_case(case: Case):
  spec = SPECS_BY_ID[case.spec]
  dtype, x64 = DTYPES[case.dtype]
  with jax.enable_x64(x64):
    _check_case(case, spec, jnp.dtype(dtype))


def _check_case(case: Case, spec: Spec, dtype):
  params = _params(case.tree, dtype)
  nan = "if_finite" in case.wrappers
  grads = _grads(case.tree, dtype, nan)
  tx = _build(spec, case.wrappers, dtype, params)

  if dtype == jnp.complex64 and not spec.complex_ok:
    with pytest.raises((TypeError, ValueError), match="complex"):
      tx.init(params)
    return

  if spec.id == "stack_leaves" and "stack" in case.wrappers:
    # Nesting stacks nothing more: refused at init, naming the fix.
    with pytest.raises(ValueError, match="stack_leaves inside stack_leaves"):
      tx.init(params)
    return

  run = _run(tx, params, grads, case.mode)

  # The state keeps its structure, shapes and dtypes; the updates have the
  # gradients' structure and the params' shapes and dtypes.
  init_signature = _signature(run.states[0])
  for t, (u, s, g) in enumerate(zip(run.updates, run.states[1:], grads)):
    assert _signature(s) == init_signature, (
        f"step {t}: state changed from\n{init_signature}\nto\n{_signature(s)}"
    )
    expected_u = jax.tree.map(
        lambda g, p: None if g is None else jax.ShapeDtypeStruct(p.shape, p.dtype),
        g,
        params,
        is_leaf=_is_none,
    )
    assert _structure(u) == _structure(g), f"step {t}: updates' structure"
    for a, e in zip(jax.tree.leaves(u), jax.tree.leaves(expected_u)):
      assert (a.shape, a.dtype) == (e.shape, e.dtype), f"step {t}: {a}, {e}"

  # A frozen param's state does not move.
  if case.tree == "frozen":
    before = _frozen_state_leaves(run.states[0])
    for t, s in enumerate(run.states[1:]):
      after = _frozen_state_leaves(s)
      assert len(after) == len(before)
      for a, e in zip(after, before):
        assert_same(a, e, True, f"frozen param's state at step {t}")

  # The reference: the plain transform, as the wrappers' semantics say.
  key = (case.spec, case.dtype, case.tree, nan)
  expected = _expected(spec, case.wrappers, params, grads, key)
  exact = expected.exact and case.mode == "eager"
  for t, (a, e) in enumerate(zip(run.updates, expected.updates or [])):
    assert_same(a, e, exact, f"update {t}")
  if expected.states is not None:
    masked_prefix = "masked_prefix" in case.wrappers
    for t, (s, e) in enumerate(zip(run.states, expected.states)):
      for w in case.wrappers:
        s = _unwrap(w, s)
      if masked_prefix:  # optax.masked's MaskedNode stands for the rest
        s, e = jax.tree.leaves(s), jax.tree.leaves(e)
      assert_same(s, e, exact, f"inner state {t}")

  # Bit for bit optax's own transform under the same wrappers and mode.
  if spec.optax_ref is not None and dtype == jnp.float32:
    if case.tree == "frozen":
      return  # optax replaces a frozen param's state by None
    optax_run = _run(
        _build(spec, case.wrappers, dtype, params, use_optax=True),
        params,
        grads,
        case.mode,
    )
    for t, (a, e) in enumerate(zip(run.updates, optax_run.updates)):
      assert_same(a, e, True, f"optax: update {t}")
    for t, (a, e) in enumerate(zip(run.states, optax_run.states)):
      assert_same(a, e, True, f"optax: state {t}")


def test_case_counts(capsys):
  default, full = len(_pairwise_cases()), len(_all_cases())
  with capsys.disabled():
    print(f"\ntest_composition: {default} cases by default, {full} with -m slow")
  assert 0 < default < full


@pytest.mark.parametrize("case", _params_of(_pairwise_cases()))
def test_composition(case):
  check_case(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", _params_of(_all_cases()))
def test_composition_full(case):
  check_case(case)
