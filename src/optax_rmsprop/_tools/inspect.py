"""`rms_stats`: what an RMSprop state says about its step sizes, for logging."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_rmsprop._core import scale_by_rms as _scale_by_rms
from optax_rmsprop._rules import numerics as _numerics
from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._rules import validation as _validation
from optax_rmsprop._tools import stacked as _stacked
from optax_rmsprop._tools import state_finder as _finder

# The RMS states (optax's own classes), found by type wherever they sit in a
# state tree. Fields are read by name (count, mu only where enabled).
_RMS_STATES = _scale_by_rms.RMS_STATE_TYPES
# Argument names of rmsprop and the presets (keras/tf1: epsilon, rho; torch,
# timm: lr, alpha), as inject_hyperparams stores them.
_NAMES = {
    "learning_rate": ("learning_rate", "lr"),
    "eps": ("eps", "epsilon"),
    "decay": ("decay", "rho", "alpha"),
}


def _field(state: Any, name: str) -> Any:
  """``state.<name>``, or None where the class has no such field."""
  return getattr(state, name) if _finder.has_field(state, name) else None


def _resolve(name: str, given: Any, found: _finder.Found) -> Any:
  """The value ``given`` (for ``found``'s group, where a dict of them), else
  the one an enclosing ``inject_hyperparams`` holds, else None."""
  if isinstance(given, Mapping):
    label = found.group
    if label in given:
      return given[label]
    given = None
    if label is None:
      raise ValueError(
          f"rms_stats: {name} is a dict per group label, but the RMS state"
          f" at {_label(found.path) or '<root>'} is in no optax.partition"
          " (or multi_transform) group: pass one value for it."
      )
  if given is not None:
    return given
  for key in _NAMES[name]:
    if key in found.hyperparams:
      return found.hyperparams[key]
  return None


def _missing(name: str, example: str) -> ValueError:
  return ValueError(
      f"rms_stats needs {name}, which the optimizer state does not hold: pass"
      f" {name}={example} (the value given to the optimizer), or build the"
      " optimizer with optax.inject_hyperparams so that its state holds it."
  )


def _quantile_key(q: float) -> str:
  return {0.0: "min", 1.0: "max"}.get(q, f"p{100 * q:g}")


_label = _trees.path_label


def _stacked_leaves(
    state: _stacked.StackLeavesState, params: Any
) -> list[tuple[str, tuple[int, int]]]:
  """(name, (group, row)) of each leaf that a ``stack_leaves`` state stacked.

  The groups are the ones the state recorded at init (positions in the
  params' flatten order, None leaves counted); ``params`` only names them.
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(
      _finder.unwrap_variables(params), is_leaf=_trees.is_none
  )
  shape = lambda x: tuple(x.shape if hasattr(x, "shape") else np.shape(x))  # noqa: E731
  rows = {
      i: (k, j)
      for k, group in enumerate(state.groups)
      for j, i in enumerate(group.indices)
  }
  groups = {i: state.groups[k] for i, (k, _) in rows.items()}
  # Positions in no group are the params' None leaves.
  if len(flat) != state.num_leaves or any(
      (leaf is None) != (i not in rows)
      or (leaf is not None and shape(leaf) != tuple(groups[i].shape))
      for i, (_, leaf) in enumerate(flat)
  ):
    raise ValueError(
        "rms_stats: params does not match the stack_leaves state"
        f" ({state.num_leaves} leaves, None counted; groups of shapes"
        f" {[g.shape for g in state.groups]}); pass the tree stack_leaves was"
        " initialised with."
    )
  return [(_label(flat[i][0]), rows[i]) for i in sorted(rows)]


def _leaf_values(nu, mu, correction):
  """ν in the compute dtype and the variance estimate v of one leaf."""
  dtype = _numerics.compute_dtype(nu.dtype)
  nu_c = nu.astype(dtype)
  nu_hat = nu_c
  if correction is not None:
    nu_hat = jnp.minimum(nu_c / correction.astype(dtype), jnp.finfo(dtype).max)
  if mu is None:
    return nu_c, nu_hat
  mu_hat = mu.astype(jnp.promote_types(mu.dtype, dtype))
  if correction is not None:
    mu_hat = mu_hat / correction.astype(dtype)
  return nu_c, jnp.maximum(nu_hat - jnp.abs(mu_hat) ** 2, 0)


def _step_size(v, lr, eps, eps_in_sqrt):
  """η / √(v + ε) or η / (√v + ε), floored as the update's denominator is."""
  tiny = jnp.finfo(v.dtype).smallest_normal
  eps = jnp.asarray(eps, v.dtype)
  if eps_in_sqrt:
    return lr * jax.lax.rsqrt(jnp.maximum(v + eps, tiny))
  return lr / jnp.maximum(jnp.sqrt(v) + eps, tiny)


def _order_statistics(x: jax.Array, ranks: list[int]) -> jax.Array:
  """The ``ranks``-th smallest elements of flat ``x`` (static ranks): one
  sort, or just min/max reductions when only the extremes are asked for."""
  if set(ranks) <= {0, x.size - 1}:
    return jnp.stack([jnp.min(x) if r == 0 else jnp.max(x) for r in ranks])
  return jnp.sort(x)[np.asarray(ranks)]


def _quantile_stats(
    nu, var, centered, lr, eps, eps_in_sqrt, correction, quantiles
) -> dict[str, dict[str, jax.Array]]:
  """Quantiles of ν, of the variance (centered) and of the step size.

  Q_q(x) = (1 - w) x_(lo) + w x_(lo + 1), lo = floor(q (n - 1)) and
  w = q (n - 1) - lo (NumPy's default ``linear`` method). The step size is
  a non-increasing function of v, and for an uncentered state v is one of ν,
  so its quantiles come from the same order statistics, mirrored: one sort
  (two when centered) and one gather serve all three, vectorised over the
  quantiles.
  """
  if not quantiles:
    return {}
  n = nu.size
  pos = np.array(quantiles, np.float64) * (n - 1)
  lo = np.floor(pos).astype(int)
  hi = np.minimum(lo + 1, n - 1)
  ranks = sorted({*lo, *hi, *(n - 1 - lo), *(n - 1 - hi)})
  at = {r: i for i, r in enumerate(ranks)}

  def lerp(values, lo_ranks, hi_ranks):
    w = (pos - lo).astype(values.dtype)
    a = values[np.array([at[r] for r in lo_ranks])]
    b = values[np.array([at[r] for r in hi_ranks])]
    return jnp.where(w > 0, a + (b - a) * w, a)  # inf - inf stays out

  ordered_nu = _order_statistics(nu, ranks)
  out = {"nu": lerp(ordered_nu, lo, hi)}
  if centered:
    ordered_v = _order_statistics(var, ranks)
    out["variance"] = lerp(ordered_v, lo, hi)
  else:  # v = ν̂ at the same rank
    ordered_v = _leaf_values(ordered_nu, None, correction)[1]
  steps = _step_size(ordered_v, lr, eps, eps_in_sqrt)
  out["step_size"] = lerp(steps, n - 1 - lo, n - 1 - hi)
  keys = [_quantile_key(q) for q in quantiles]
  return {k: dict(zip(keys, v)) for k, v in out.items()}


def rms_stats(
    opt_state: Any,
    *,
    learning_rate: Optional[
        Union[optax.ScalarOrSchedule, Mapping[Any, optax.ScalarOrSchedule]]
    ] = None,
    eps: Optional[jax.typing.ArrayLike] = None,
    eps_in_sqrt: bool = True,
    decay: Optional[jax.typing.ArrayLike] = None,
    quantiles: Sequence[float] = (0.05, 0.5, 0.95),
    per_leaf: bool = True,
    params: Optional[optax.Params] = None,
) -> dict[str, jax.Array]:
  r"""Statistics of RMSprop's per-parameter step sizes, read from its state.

  Finds the RMS state(s) in ``opt_state`` by type, however wrapped
  (``optax.chain``, ``optax.inject_hyperparams``, ``optax.MultiSteps``,
  ``optax.masked``, ``optax.apply_if_finite``, :func:`stack_leaves`, an
  ``nnx.Optimizer`` or its ``opt_state``), and returns a flat dict of scalars
  for a logger. With the state's :math:`\nu` (and :math:`\mu` when centered)
  after :math:`t` updates, :math:`\rho` = ``decay``, :math:`\epsilon` =
  ``eps`` and :math:`\eta_t` the learning rate of the latest update
  (``learning_rate``, a schedule called with :math:`\max(t - 1, 0)`, as
  ``optax.inject_hyperparams`` records it):

  .. math::

    \begin{align*}
      \hat\nu &= \nu / (1 - \rho^t), \quad \hat\mu = \mu / (1 - \rho^t)
        && \text{if the state counts (bias correction; } t > 0) \\
      v &= \max(\hat\nu - |\hat\mu|^2,\ 0)
        && \text{if centered, else } v = \hat\nu \\
      s &= \eta_t / \sqrt{v + \epsilon}
        && \text{if eps\_in\_sqrt, else } s = \eta_t / (\sqrt{v} + \epsilon) \\
      Q_q(x) &= (1 - w)\, x_{(\lfloor q(n-1) \rfloor)}
        + w\, x_{(\lfloor q(n-1) \rfloor + 1)}, \quad
        w = q(n-1) - \lfloor q(n-1) \rfloor
    \end{align*}

  :math:`s` is the step the latest update took per unit of gradient (before
  momentum, which multiplies a steady step by :math:`1/(1-\beta)`), and
  :math:`Q_q` NumPy's default (linear) quantile over a leaf's :math:`n`
  elements, :math:`x_{(k)}` the :math:`k`-th smallest. Keys, for each leaf
  named by its path (or once over all leaves with ``per_leaf=False``):

  * ``count``: :math:`t`, from the innermost counter around the state (its
    own, a schedule's, ``inject_hyperparams``', ``MultiSteps``'
    ``gradient_step`` or ``nnx.Optimizer``'s ``step``); absent if none.
  * ``learning_rate``: :math:`\eta_t`.
  * ``step_size/<leaf>/<q>``, ``nu/<leaf>/<q>`` and, when centered,
    ``variance/<leaf>/<q>``: :math:`Q_q` of :math:`s`, :math:`\nu` (as
    stored) and :math:`v`; ``<q>`` is ``min``, ``p5``, ``p50``, ..., ``max``.
  * ``nu_saturated/<leaf>``: elements with :math:`\nu` at its dtype's
    largest finite value or above (``inf`` after a :math:`|g|^2` that
    overflowed, the largest finite value in a low-precision ``nu_dtype``);
    ``nu_zero/<leaf>``: elements with :math:`\nu = 0` (no gradient
    yet, or ever: their step is :math:`\eta/\sqrt\epsilon`).

  Several RMS states (e.g. ``optax.multi_transform``) prefix every key with
  the state's path, and each takes its own learning rate: its group's
  injected one, or its group's entry of a ``learning_rate`` dict (a single
  ``learning_rate`` given applies to all). Costs one sort of :math:`\nu`
  per leaf (two when centered), or just min/max reductions when
  ``quantiles`` holds only 0 and 1; it adds nothing to the optimizer state
  and runs under ``jax.jit`` / ``nnx.jit``.

  Args:
    opt_state: An optimizer state, or an ``nnx.Optimizer``. Not
      ``nnx.state(optimizer)``, which turns optax's NamedTuples into dicts.
    learning_rate: :math:`\eta`, a float or the optimizer's schedule, for
      every RMS state; or a dict from ``optax.partition`` /
      ``optax.multi_transform`` group labels to each group's (groups it
      leaves out use their injected one). None: each RMS state's enclosing
      ``inject_hyperparams``' ``learning_rate`` (or ``lr``), which is each
      group's own when the groups are injected separately.
    eps: :math:`\epsilon`. None: injected ``eps`` (or ``epsilon``).
    eps_in_sqrt: As given to the optimizer: True for :func:`rmsprop`'s
      default and every preset except :func:`torch_rmsprop` (False).
    decay: :math:`\rho`, needed only with bias correction. None: injected
      ``decay`` (or ``rho``, ``alpha``).
    quantiles: The :math:`q` in [0, 1] to report (a sequence, or a NumPy
      vector); static.
    per_leaf: Statistics per parameter leaf, or over all leaves together.
    params: For a :func:`stack_leaves` state, the parameters (or their shapes)
      it was built for, to report per parameter leaf; without them its
      statistics are per stacked group, ``group0``, ``group1``, ...

  Returns:
    A flat ``dict`` from names to scalar arrays.

  Raises:
    ValueError: if ``opt_state`` holds no RMS state, or a value needed is
      neither given nor injected (``learning_rate``, ``eps``; ``decay`` with
      bias correction; an update count with a schedule).

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.rmsprop(learning_rate=0.1, eps=0.0)
    >>> params = {'w': jnp.zeros(4)}
    >>> state = tx.init(params)
    >>> _, state = tx.update({'w': jnp.array([1.0, 2.0, 4.0, 8.0])}, state)
    >>> stats = optax_rmsprop.rms_stats(
    ...     state, learning_rate=0.1, eps=0.0, quantiles=(0.0, 1.0))
    >>> float(stats['nu/w/max'])  # 0.1 * 8**2
    6.4...
    >>> float(stats['step_size/w/max'])  # 0.1 / sqrt(0.1 * 1**2)
    0.316...
    >>> int(stats['nu_zero/w'])
    0

  References:
    Hinton, `Lecture 6e: rmsprop
    <https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf>`_,
    2012 (the per-weight step size).

    `optax#206 <https://github.com/google-deepmind/optax/issues/206>`_,
    `optax#312 <https://github.com/google-deepmind/optax/issues/312>`_
    (reading the learning rate out of a state).
  """
  if isinstance(learning_rate, Mapping):
    for label, value in learning_rate.items():
      _validation.check_nonnegative(
          f"learning_rate[{label!r}]", value, schedule=True
      )
  else:
    _validation.check_nonnegative(
        "learning_rate", learning_rate, optional=True, schedule=True
    )
  _validation.check_nonnegative("eps", eps, optional=True)
  _validation.check_interval("decay", decay, 0.0, 1.0, optional=True)
  _validation.check_flag("eps_in_sqrt", eps_in_sqrt)
  _validation.check_flag("per_leaf", per_leaf)
  if isinstance(quantiles, jax.core.Tracer):
    raise TypeError(
        "quantiles must be static (numbers, or a NumPy array), but they are"
        " traced: they pick which order statistics to compute."
    )
  if isinstance(quantiles, (np.ndarray, jax.Array)) and np.ndim(quantiles) == 1:
    quantiles = np.asarray(quantiles).tolist()  # e.g. np.linspace(0, 1, 5)
  if isinstance(quantiles, (str, bytes)) or not isinstance(quantiles, Sequence):
    raise TypeError(
        f"quantiles must be a sequence of numbers, got {quantiles!r}"
    )
  for q in quantiles:
    _validation.check_interval("quantiles", q, 0.0, 1.0)
  quantiles = tuple(float(q) for q in quantiles)
  if any(not 0.0 <= q <= 1.0 for q in quantiles):
    raise ValueError(f"quantiles must lie in [0, 1], got {quantiles}")
  if len({_quantile_key(q) for q in quantiles}) != len(quantiles):
    raise ValueError(f"quantiles must be distinct, got {quantiles}")

  found, counters = _finder.find_states(opt_state, _RMS_STATES, nnx=True)
  if not found:
    raise ValueError(
        "rms_stats: no RMSprop state (optax.ScaleByRmsState, "
        "ScaleByRStdDevState or their WithCount forms) in opt_state. Pass the"
        " optimizer state itself, or the nnx.Optimizer: nnx.state(optimizer)"
        " has turned optax's state types into dicts."
    )

  stats: dict[str, jax.Array] = {}
  for found_one in found:
    prefix = _label(found_one.path) + "/" if len(found) > 1 else ""
    part = _one_state(
        found_one,
        _finder.nearest_count(counters, found_one.path),
        learning_rate,
        eps,
        eps_in_sqrt,
        decay,
        quantiles,
        per_leaf,
        params,
    )
    stats.update({prefix + k: v for k, v in part.items()})
  return stats


def _one_state(
    found,
    count,
    learning_rate,
    eps,
    eps_in_sqrt,
    decay,
    quantiles,
    per_leaf,
    params,
) -> dict[str, jax.Array]:
  """The statistics of one RMS state (see :func:`rms_stats`)."""
  state = found.state
  lr = _resolve("learning_rate", learning_rate, found)
  if lr is None and isinstance(learning_rate, Mapping):
    raise ValueError(
        f"rms_stats: learning_rate has no entry for group {found.group!r}"
        f" (it has {sorted(map(repr, learning_rate))}), and its state does"
        " not hold one (optax.inject_hyperparams)."
    )
  if lr is None:
    raise _missing("learning_rate", "1e-3 or a schedule")
  if callable(lr):
    if count is None:
      raise ValueError(
          "rms_stats: learning_rate is a schedule, but the state holds no"
          " update count to call it with; pass the current value instead."
      )
    lr = lr(jnp.maximum(count - 1, 0))
  eps = _resolve("eps", eps, found)
  if eps is None:
    raise _missing("eps", "1e-8")
  correction = None
  if _field(state, "count") is not None:  # bias correction
    decay = _resolve("decay", decay, found)
    if decay is None:
      raise _missing("decay", "0.9")
    t = state.count
    correction = jnp.where(t > 0, 1 - jnp.asarray(decay, jnp.float32) ** t, 1.0)

  nu_tree, mu_tree = state.nu, _field(state, "mu")
  flat, _ = jax.tree_util.tree_flatten_with_path(nu_tree)
  nus = [leaf for _, leaf in flat]
  # μ has ν's tree structure, so its leaves come in the same order.
  mus: list[Any] = [None] * len(nus)
  if mu_tree is not None:
    mus = jax.tree.leaves(mu_tree)
  names: list[str]
  if found.stack is not None:
    if len(nus) != len(found.stack.groups):
      raise ValueError(
          f"rms_stats: the RMS state under stack_leaves holds {len(nus)}"
          f" arrays for {len(found.stack.groups)} stacked groups."
      )
    if params is None:
      names = [f"group{k}" for k in range(len(nus))]
    else:
      named = _stacked_leaves(found.stack, params)
      names = [name for name, _ in named]
      pick = lambda xs: [xs[k][j] for _, (k, j) in named]  # noqa: E731
      nus = pick(nus)
      mus = pick(mus) if mu_tree is not None else [None] * len(named)
  else:
    names = [_label(path) for path, _ in flat]
  leaves = [(n, nu, mu) for n, nu, mu in zip(names, nus, mus) if nu.size]

  dtype = _numerics.compute_dtype(
      jnp.result_type(*[nu for _, nu, _ in leaves]) if leaves else jnp.float32
  )
  stats = {"learning_rate": jnp.asarray(lr, dtype)}
  if count is not None:
    stats["count"] = jnp.asarray(count, jnp.int32)
  centered = mu_tree is not None
  lr = stats["learning_rate"]

  def put(name, values):
    for quantity, by_q in values.items():
      for key, value in by_q.items():
        stats["/".join(filter(None, (quantity, name, key)))] = value

  values = []
  for name, nu, mu in leaves:
    big = jnp.finfo(nu.dtype).max
    saturated = jnp.sum(nu >= big, dtype=jnp.int32)
    zero = jnp.sum(nu == 0, dtype=jnp.int32)
    nu_c, var = _leaf_values(nu, mu, correction)
    if per_leaf:
      stats["/".join(filter(None, ("nu_saturated", name)))] = saturated
      stats["/".join(filter(None, ("nu_zero", name)))] = zero
      put(
          name,
          _quantile_stats(
              nu_c.ravel(),
              var.ravel(),
              centered,
              lr,
              eps,
              eps_in_sqrt,
              correction,
              quantiles,
          ),
      )
    else:
      values.append((
          nu_c.astype(dtype).ravel(),
          var.astype(dtype).ravel(),
          saturated,
          zero,
      ))
  if not per_leaf and values:
    nu_all = jnp.concatenate([v[0] for v in values])
    var_all = jnp.concatenate([v[1] for v in values])
    stats["nu_saturated"] = jnp.sum(jnp.stack([v[2] for v in values]))
    stats["nu_zero"] = jnp.sum(jnp.stack([v[3] for v in values]))
    put(
        "",
        _quantile_stats(
            nu_all,
            var_all,
            centered,
            lr,
            eps,
            eps_in_sqrt,
            correction,
            quantiles,
        ),
    )
  return stats
