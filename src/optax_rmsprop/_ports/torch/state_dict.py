"""Moving a run between ``torch.optim.RMSprop`` and :func:`torch_rmsprop`.

The state is found by type wherever it sits in the optax state tree (inside
``optax.partition``, ``optax.inject_hyperparams``, the complex split, ...):
optax's RMS states hold square_avg (``nu``) and grad_avg (``mu``),
``optax.TraceState`` the momentum buffer, and the update counts
(``ScaleByScheduleState``, ``InjectHyperparamsState``) torch's ``step``.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_rmsprop._core import scale_by_rms as _scale_by_rms
from optax_rmsprop._ports import switches as _switches
from optax_rmsprop._rules import optax_compat as _optax_compat
from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._tools import state_finder as _finder

_INJECT_STATES = _trees.INJECT_STATE_TYPES
# The states holding torch's per-parameter buffers: optax's RMS states and
# the momentum's TraceState.
_BUFFER_STATES = _scale_by_rms.RMS_STATE_TYPES + (optax.TraceState,)
_Pair = _optax_compat.SplitRealAndImaginaryArrays
# torch's per-parameter state keys, in the order torch creates them.
_KEYS = (("square_avg", "nu"), ("momentum_buffer", "trace"), ("grad_avg", "mu"))


def _has(node: Any, field: str) -> bool:
  return _finder.has_field(node, field) and getattr(node, field) is not None


class _Node(NamedTuple):
  """A state holding per-parameter buffers (an RMS state or a TraceState)."""

  found: _finder.Found
  entries: Dict[str, List[Any]]  # field -> entry per params leaf (or None)


def _find(opt_state, treedef) -> tuple[List[_Node], List[_finder.Counter]]:
  """The buffer-holding states and the update counters in ``opt_state``.

  torch's ``step`` counts the updates of the torch optimizer, so MultiSteps'
  ``gradient_step`` is no counter here (MultiSteps is walked through).
  """
  found, counters = _finder.find_states(
      opt_state, _BUFFER_STATES, wrappers=_INJECT_STATES
  )
  nodes = []
  for one in found:
    entries = {}
    for field in ("nu", "mu", "trace"):
      if _has(one.state, field):
        try:
          per_leaf = treedef.flatten_up_to(getattr(one.state, field))
        except (ValueError, TypeError) as e:
          raise ValueError(
              f"the optimizer state at {jax.tree_util.keystr(one.path)} does"
              " not follow the params tree given"
          ) from e
        entries[field] = [
            None if isinstance(x, optax.MaskedNode) else x for x in per_leaf
        ]
    nodes.append(_Node(one, entries))
  return nodes, counters


def _buffers_per_leaf(nodes: List[_Node], n: int, paths) -> List[Dict]:
  """For each params leaf, ``{field: (node index, entry)}``."""
  out: List[Dict[str, Any]] = [{} for _ in range(n)]
  for i, node in enumerate(nodes):
    for field, entries in node.entries.items():
      for k, entry in enumerate(entries):
        if entry is None:
          continue
        if field in out[k]:
          raise ValueError(
              f"params leaf {paths[k]} has two {field!r} buffers in the"
              " optimizer state; expected one torch_rmsprop per leaf"
          )
        out[k][field] = (i, entry)
  for k, buffers in enumerate(out):
    if "nu" not in buffers:
      raise ValueError(
          f"params leaf {paths[k]} has no RMS state in the optimizer state:"
          " is it a torch_rmsprop state for these params?"
      )
  return out


def _torch_ids(names, treedef, param_groups, n: int, paths) -> List[int]:
  """The torch parameter index of each params leaf."""
  order = [int(i) for group in param_groups for i in group["params"]]
  if names is None:
    if len(order) != n:
      raise ValueError(
          f"the params tree has {n} leaves but the torch optimizer"
          f" {len(order)} parameters; pass names= to map them"
      )
    return order
  by_name: Dict[str, int] = {}
  for group in param_groups:
    by_name.update(zip(group.get("param_names", ()), group["params"]))
  try:
    flat_names = treedef.flatten_up_to(names)
  except (ValueError, TypeError) as e:
    raise ValueError(
        "names must be a tree with the params' structure (a torch parameter"
        f" name or index per leaf): {' '.join(str(e).split())}"
    ) from None
  ids = []
  for k, name in enumerate(flat_names):
    if isinstance(name, str):
      if name not in by_name:
        raise ValueError(
            f"params leaf {paths[k]}: no torch parameter named {name!r} (the"
            " param_groups' param_names are"
            f" {sorted(by_name) or 'absent: give indices'})"
        )
      ids.append(int(by_name[name]))
    else:
      ids.append(int(name))
  if len(set(ids)) != len(ids):
    raise ValueError("names maps two params leaves to one torch parameter")
  unknown = set(ids) - set(order)
  if unknown:
    raise ValueError(f"no torch parameters with indices {sorted(unknown)}")
  return ids


def _check_param_groups(param_groups) -> None:
  if (
      isinstance(param_groups, (str, bytes, Mapping))
      or not isinstance(param_groups, Sequence)
      or not all(isinstance(g, Mapping) for g in param_groups)
  ):
    raise TypeError(
        "param_groups must be a torch optimizer's"
        " state_dict()['param_groups'], a list of dicts, got"
        f" {param_groups!r}"
    )


def _group_of(param_groups) -> Dict[int, Mapping[str, Any]]:
  return {int(i): group for group in param_groups for i in group["params"]}


def _numpy(tensor: Any) -> np.ndarray:
  if hasattr(tensor, "detach"):  # a torch.Tensor
    tensor = tensor.detach().cpu()
    try:
      return tensor.numpy()
    except TypeError:  # bfloat16 and other dtypes NumPy lacks
      return tensor.float().numpy()
  return np.asarray(tensor)


def _like(value: np.ndarray, template: jax.Array) -> jax.Array:
  # A copy: on CPU, jnp.asarray can alias the buffer of a torch tensor's
  # NumPy view, which torch's next step would then change under us.
  out = jnp.array(value, dtype=template.dtype, copy=True)
  sharding = getattr(template, "sharding", None)
  return out if sharding is None else jax.device_put(out, sharding)


def _leaf_paths(params) -> List[str]:
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return [jax.tree_util.keystr(path) or "(the params)" for path, _ in flat]


def _injected_zero_momentum(nodes: List[_Node]) -> bool:
  """Whether an ``inject_hyperparams`` state around a buffer holds a
  concrete momentum of 0."""
  return any(
      _switches.known_off(node.found.hyperparams.get("momentum"))
      for node in nodes
  )


def _why(theirs: bool, field: str, zero_injected: bool) -> str:
  """The likely cause of a momentum buffer mismatch, for the message."""
  if field != "trace":
    return ""
  if theirs:
    return " (torch_rmsprop has a buffer only where tx.init saw momentum > 0)"
  if zero_injected:
    return (
        " although its injected momentum is 0: tx.init ran under jax.jit or"
        " jax.eval_shape, where the injected value is traced, so it kept one;"
        " call tx.init eagerly"
    )
  return ""


def _check_buffers(
    k, torch_id, path, has, group_or_state, what, zero_injected=False
) -> None:
  """Raises unless the optax state has momentum / grad_avg as torch does."""
  for torch_key, field, option in (
      ("momentum_buffer", "trace", "momentum > 0"),
      ("grad_avg", "mu", "centered"),
  ):
    theirs = (
        torch_key in group_or_state
        if what == "state"
        else bool(
            group_or_state.get("momentum" if field == "trace" else "centered")
        )
    )
    ours = field in has[k]
    if theirs != ours:
      raise ValueError(
          f"torch parameter {torch_id} (params leaf {path}):"
          f" {'torch has' if theirs else 'torch has no'} {torch_key} but the"
          f" optax state {'has' if ours else 'has none'}"
          f"{_why(theirs, field, zero_injected)}; build the optax"
          f" optimizer with the same {option} as the torch one"
      )


def from_torch_state_dict(
    state_dict: Mapping[str, Any],
    tx: optax.GradientTransformation,
    params: optax.Params,
    *,
    names: Optional[Any] = None,
) -> optax.OptState:
  r"""The optax state of ``tx`` that continues a ``torch.optim.RMSprop`` run.

  ``tx`` is :func:`torch_rmsprop` (or :func:`torch_param_groups`, or either
  inside ``optax.chain``, ``optax.inject_hyperparams``, ...) built with the
  torch optimizer's hyperparameters; ``params`` are the torch parameters'
  values as JAX arrays. For each torch parameter :math:`i` and its params
  leaf, with :math:`\nu, \mu, b` the leaf's buffers in ``tx``'s state:

  .. math::

    \nu \leftarrow \texttt{square\_avg}_i, \quad
    \mu \leftarrow \texttt{grad\_avg}_i, \quad
    b \leftarrow \texttt{momentum\_buffer}_i, \quad
    c \leftarrow \max_{i \in \text{scope}} \texttt{step}_i

  where :math:`c` is each update count in the state (of an lr schedule, of
  ``inject_hyperparams``), set to the largest ``step`` of the parameters it
  counts for, so that a schedule continues where torch's scheduler stood
  when it was stepped once per update. A complex parameter's real and
  imaginary parts go to the two halves of the ``torch.view_as_real`` split.
  A torch parameter without state (it never had a gradient) keeps
  ``tx.init``'s zeros.

  Args:
    state_dict: ``torch_optimizer.state_dict()`` (tensors or arrays).
    tx: The optax optimizer that continues the run.
    params: The parameters, as a pytree. Without ``names`` its leaves, in
      ``jax.tree.leaves`` order, are the torch parameters in the optimizer's
      order (``state_dict["param_groups"]``'s ``params``, group by group).
    names: A pytree like ``params`` whose leaves are each leaf's torch
      parameter: its index in the state dict, or its name where the torch
      optimizer was given ``model.named_parameters()`` (``param_names``).
      Leaves must have the torch parameters' shapes: convert layouts (e.g.
      transposed weights) in the state dict the way you convert the params.

  Returns:
    ``tx``'s state, as ``tx.init(params)`` with the torch buffers and count.

  Raises:
    ValueError: if the parameters do not match (count, names, shapes), or if
      torch has a momentum buffer or ``grad_avg`` that the optax state lacks
      (or the other way round).

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_rmsprop
    >>> import torch
    >>> w = torch.tensor([1.0, 2.0])
    >>> torch_opt = torch.optim.RMSprop([w], lr=0.01, momentum=0.9)
    >>> w.grad = torch.tensor([0.5, -1.0])
    >>> torch_opt.step()
    >>> params = jnp.array(w.numpy())  # a copy: torch updates w in place
    >>> tx = optax_rmsprop.torch_rmsprop(lr=0.01, momentum=0.9)
    >>> state = optax_rmsprop.torch.from_torch_state_dict(
    ...     torch_opt.state_dict(), tx, params)
    >>> w.grad = torch.tensor([0.5, -1.0])
    >>> torch_opt.step()
    >>> updates, state = tx.update(jnp.array([0.5, -1.0]), state, params)
    >>> bool(jnp.allclose(optax.apply_updates(params, updates), w.numpy()))
    True

  References:
    PyTorch, `torch.optim.Optimizer.state_dict
    <https://pytorch.org/docs/stable/generated/torch.optim.Optimizer.state_dict.html>`_;
    `torch/optim/rmsprop.py
    <https://github.com/pytorch/pytorch/blob/main/torch/optim/rmsprop.py>`_
    (``_init_group``: the state keys).
  """
  _trees.check_transform("tx", tx)
  if not isinstance(state_dict, Mapping) or not {
      "state",
      "param_groups",
  } <= set(state_dict):
    raise TypeError(
        "state_dict must be a torch optimizer's state_dict(), a mapping with"
        f" 'state' and 'param_groups', got {type(state_dict).__name__}"
        f" {list(state_dict) if isinstance(state_dict, Mapping) else ''}"
    )
  leaves, treedef = jax.tree.flatten(params)
  paths = _leaf_paths(params)
  param_groups = state_dict["param_groups"]
  torch_state = state_dict["state"]
  ids = _torch_ids(names, treedef, param_groups, len(leaves), paths)
  opt_state = tx.init(params)
  nodes, counters = _find(opt_state, treedef)
  has = _buffers_per_leaf(nodes, len(leaves), paths)

  steps = {}  # leaf -> torch step
  new_entries = [  # node -> field -> per-leaf replacements
      {f: list(e) for f, e in node.entries.items()} for node in nodes
  ]
  for k, torch_id in enumerate(ids):
    entry = torch_state.get(torch_id, torch_state.get(str(torch_id), {}))
    if not entry:
      continue
    _check_buffers(
        k,
        torch_id,
        paths[k],
        has,
        entry,
        "state",
        _injected_zero_momentum(nodes),
    )
    steps[k] = int(_numpy(entry["step"]))
    for torch_key, field in _KEYS:
      if field not in has[k]:
        continue
      value = _numpy(entry[torch_key])
      i, ours = has[k][field]
      if value.shape != np.shape(leaves[k]):
        raise ValueError(
            f"torch parameter {torch_id}'s {torch_key} has shape"
            f" {value.shape}, params leaf {paths[k]} {np.shape(leaves[k])}"
        )
      if isinstance(ours, _Pair):
        if not np.iscomplexobj(value):
          raise ValueError(
              f"params leaf {paths[k]} is complex but torch parameter"
              f" {torch_id} is real"
          )
        new = _Pair(
            _like(value.real, ours.real), _like(value.imag, ours.imaginary)
        )
      else:
        if np.iscomplexobj(value):
          raise ValueError(
              f"torch parameter {torch_id} is complex: its optax state needs"
              " the view-as-real split of torch_rmsprop (params leaf"
              f" {paths[k]})"
          )
        new = _like(value, ours)
      new_entries[i][field][k] = new

  def count_of(scope: tuple) -> int:
    covered = {
        k
        for k in steps
        if any(
            _finder.in_scope(nodes[i].found.path, scope)
            for i, _ in has[k].values()
        )
    }
    return max((steps[k] for k in covered), default=0)

  replacements = {}
  for i, node in enumerate(nodes):
    fields = {
        f: jax.tree.unflatten(
            treedef, [optax.MaskedNode() if x is None else x for x in entries]
        )
        for f, entries in new_entries[i].items()
    }
    replacements[node.found.path] = node.found.state._replace(**fields)

  def rebuild(found: _finder.Found) -> Any:
    """A state with the torch buffers, or a counter set to its scope's."""
    node = found.state
    if not isinstance(node, _BUFFER_STATES):  # a counter
      count = count_of(_finder.scope_of(found))
      node = node._replace(count=_count_like(count, node.count))
      if "hyperparams_states" in node._fields:  # schedules' own counts
        is_wrapped = lambda x: isinstance(x, _optax_compat.WrappedScheduleState)
        node = node._replace(
            hyperparams_states=jax.tree.map(
                lambda x: (
                    x._replace(count=_count_like(count, x.count))
                    if is_wrapped(x)
                    else x
                ),
                node.hyperparams_states,
                is_leaf=is_wrapped,
            )
        )
      return node
    new = replacements[found.path]
    if _has(new, "count"):
      new = new._replace(count=_count_like(count_of(found.path), new.count))
    return new

  return _finder.map_states(
      rebuild, opt_state, _BUFFER_STATES, wrappers=_INJECT_STATES
  )


def _count_like(value: int, template: jax.Array) -> jax.Array:
  return _like(np.asarray(value), template)


def to_torch_state_dict(
    opt_state: optax.OptState,
    params: optax.Params,
    param_groups: Sequence[Mapping[str, Any]],
    *,
    names: Optional[Any] = None,
    step: Optional[int] = None,
) -> Dict[str, Any]:
  r"""A ``torch.optim.RMSprop`` state dict that continues an optax run.

  The inverse of :func:`from_torch_state_dict`: for each params leaf and its
  torch parameter :math:`i`, with :math:`\nu, \mu, b` the leaf's buffers in
  ``opt_state`` (of :func:`torch_rmsprop` or :func:`torch_param_groups`):

  .. math::

    \texttt{square\_avg}_i \leftarrow \nu, \quad
    \texttt{grad\_avg}_i \leftarrow \mu, \quad
    \texttt{momentum\_buffer}_i \leftarrow b, \quad
    \texttt{step}_i \leftarrow c

  with :math:`c` the update count of the leaf's schedule or
  ``inject_hyperparams`` (else ``step``). Load it with
  ``torch_optimizer.load_state_dict(...)`` into a torch optimizer with the
  same parameter groups; torch takes the groups' hyperparameters from it.

  Args:
    opt_state: The optax state.
    params: The parameters, as a pytree (see :func:`from_torch_state_dict`).
    param_groups: The torch optimizer's parameter groups with ``params``
      holding indices, e.g. ``torch_optimizer.state_dict()["param_groups"]``
      of a newly built torch optimizer; copied into the result. ``lr`` is the
      lr torch continues with (a torch scheduler sets it anew). A single
      group may omit ``params`` (then all leaves, in order).
    names: As in :func:`from_torch_state_dict`.
    step: torch's ``step`` where the state holds no count (a constant lr).

  Returns:
    ``{"state": {index: {"step", "square_avg", ...}}, "param_groups": [...]}``
    with ``torch.Tensor`` values, as ``torch_optimizer.state_dict()``.

  Raises:
    ImportError: if torch is not installed.
    ValueError: if the parameters do not match, the groups' ``momentum`` or
      ``centered`` disagree with the state's buffers, or no count is known.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> import torch
    >>> tx = optax_rmsprop.torch_rmsprop(lr=0.01, momentum=0.9)
    >>> params = jnp.array([1.0, 2.0])
    >>> state = tx.init(params)
    >>> _, state = tx.update(jnp.array([0.5, -1.0]), state, params)
    >>> w = torch.tensor([1.0, 2.0])  # params after that update, in torch
    >>> torch_opt = torch.optim.RMSprop([w], lr=0.01, momentum=0.9)
    >>> torch_opt.load_state_dict(optax_rmsprop.torch.to_torch_state_dict(
    ...     state, params, torch_opt.state_dict()["param_groups"], step=1))
    >>> torch_opt.state[w]["square_avg"]
    tensor([0.0025, 0.0100])

  References:
    PyTorch, `torch.optim.Optimizer.load_state_dict
    <https://pytorch.org/docs/stable/generated/torch.optim.Optimizer.load_state_dict.html>`_.
  """
  import torch  # pylint: disable=g-import-not-at-top

  _check_param_groups(param_groups)
  leaves, treedef = jax.tree.flatten(params)
  paths = _leaf_paths(params)
  groups: List[Dict[str, Any]] = copy.deepcopy([dict(g) for g in param_groups])
  if len(groups) == 1 and "params" not in groups[0]:
    groups[0]["params"] = list(range(len(leaves)))
  ids = _torch_ids(names, treedef, groups, len(leaves), paths)
  group_of = _group_of(groups)
  nodes, counters = _find(opt_state, treedef)
  has = _buffers_per_leaf(nodes, len(leaves), paths)
  scalar = (
      torch.float64
      if torch.get_default_dtype() == torch.float64
      else torch.float32
  )

  state = {}
  for k, torch_id in enumerate(ids):
    _check_buffers(
        k,
        torch_id,
        paths[k],
        has,
        group_of[torch_id],
        "group",
        _injected_zero_momentum(nodes),
    )
    count = _finder.nearest_count(
        counters, *[nodes[i].found.path for i, _ in has[k].values()]
    )
    if count is not None:
      count = int(count)
    elif step is not None:
      count = int(step)
    else:
      raise ValueError(
          "the optimizer state holds no update count (a constant lr): pass"
          " step=, the number of updates made"
      )
    entry = {"step": torch.tensor(float(count), dtype=scalar)}
    for torch_key, field in _KEYS:
      if field in has[k]:
        value = has[k][field][1]
        if isinstance(value, _Pair):
          real = np.asarray(jax.device_get(value.real))
          imag = np.asarray(jax.device_get(value.imaginary))
          value = np.empty(real.shape, np.result_type(real, np.complex64))
          value.real, value.imag = real, imag
        entry[torch_key] = _tensor(torch, value)
    state[torch_id] = entry
  return {"state": state, "param_groups": groups}


def _tensor(torch, value) -> Any:
  value = np.array(jax.device_get(value))  # a writable copy
  if value.dtype == jnp.bfloat16:
    return torch.from_numpy(value.astype(np.float32)).to(torch.bfloat16)
  return torch.from_numpy(value)
