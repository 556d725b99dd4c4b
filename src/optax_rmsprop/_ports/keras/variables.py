"""Keras 3 ``RMSprop`` variables <-> the optax state of `keras_rmsprop`.

A Keras optimizer keeps its state in ``optimizer.variables``: ``iteration``,
``learning_rate`` (for a float lr), then one variable per trainable variable
for each of ``*_average`` (``use_ema``), ``*_gradient_accumulator``
(``gradient_accumulation_steps``), ``*_velocity``, ``*_momentum`` (momentum
> 0) and ``*_average_gradient`` (``centered``), in that order (Keras 3.15
``base_optimizer.build`` and ``rmsprop.build``). The optax side is found by
state *type*, wherever it sits in the chain: optax's ``ScaleByRmsState`` /
``ScaleByRStdDevState`` (and their ``WithCount`` variants), ``TraceState``,
``ScaleByScheduleState``, ``MultiStepsState``, the states of
``optax.inject_hyperparams`` and our ``EmaParamsState``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_rmsprop._core import scale_by_rms as _scale_by_rms
from optax_rmsprop._ports import switches as _switches
from optax_rmsprop._ports.keras import transforms as _keras_transforms
from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._tools import state_finder as _finder

_RMS_STATES = _scale_by_rms.RMS_STATE_TYPES
# The states holding Keras variables (MultiSteps: the accumulator and the
# count of calls), and the wrappers whose inner states count updates.
_STATES = _RMS_STATES + (
    optax.TraceState,
    optax.MultiStepsState,
    _keras_transforms.EmaParamsState,
)
_WRAPPERS = _trees.INJECT_STATE_TYPES + (optax.MultiStepsState,)
# Per-trainable-variable blocks of optimizer.variables, in Keras' order.
_BLOCKS = (
    "average",
    "gradient_accumulator",
    "velocity",
    "momentum",
    "average_gradient",
)


def from_keras_variables(
    optimizer: Any,
    params: optax.Params,
    tx: optax.GradientTransformation,
    *,
    optimizer_variables: Optional[Sequence[Any]] = None,
    variable_paths: Optional[Any] = None,
) -> optax.OptState:
  r"""The state of ``tx`` (a :func:`keras_rmsprop`) that continues a Keras run.

  ``tx`` must be built with the Keras optimizer's arguments. Its
  ``tx.init(params)`` state is filled from the built Keras 3
  ``keras.optimizers.RMSprop``'s variables, so that ``tx.update`` continues
  the Keras run where it stopped: with :math:`n` = ``iteration`` (Keras'
  count of ``apply`` calls) and :math:`k` = ``gradient_accumulation_steps``
  (1 if None),

  .. math::

    \begin{align*}
      \nu &\leftarrow \texttt{velocity}, \quad
      \mu \leftarrow \texttt{average\_gradient}, \quad
      m \leftarrow -\texttt{momentum} \\
      e &\leftarrow \texttt{average}, \quad
      a \leftarrow \texttt{gradient\_accumulator} \\
      \text{schedule count} &\leftarrow \lfloor n / k \rfloor, \quad
      \text{mini\_step} \leftarrow n \bmod k, \quad
      \text{EMA count} \leftarrow n
    \end{align*}

  (:math:`m` is negated: Keras' buffer holds the steps it subtracts, optax's
  ``optax.trace`` the updates it adds.) The Keras ``learning_rate``
  variable is not state here: the lr is ``tx``'s (build ``tx`` with the
  value Keras holds, e.g. after a ``ReduceLROnPlateau`` callback). The model
  variables themselves are ``params``.

  Args:
    optimizer: A built ``keras.optimizers.RMSprop`` (Keras 3, any backend);
      only its public attributes and ``variables`` are read.
    params: The parameters, as ``tx`` will see them: by default their
      leaves, in ``jax.tree.leaves`` order, are the Keras trainable variables
      in the order the optimizer was built with, that of
      ``model.trainable_variables`` (a list keeps it, a dict sorts its keys).
    tx: The :func:`keras_rmsprop` transformation to continue with.
    optimizer_variables: Values for ``optimizer.variables``, as
      ``optimizer.stateless_apply`` takes and returns them; default: the
      variables' current values.
    variable_paths: Optional tree like ``params`` whose leaves are the Keras
      variable paths (``variable.path``, e.g. ``"sequential/dense/kernel"``)
      of each leaf, instead of leaf order.

  Returns:
    ``tx.init(params)`` with the Keras values in place (each leaf in the
    template's dtype and sharding).

  Raises:
    ValueError: if the optimizer is not a built RMSprop, the variables or
      shapes do not match ``params``, or ``tx``'s state lacks (or has extra)
      parts for the Keras configuration (momentum, centered, EMA,
      accumulation).

  Examples:
    >>> import os
    >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")
    >>> import keras
    >>> import numpy as np
    >>> import optax
    >>> import optax_rmsprop
    >>> w = keras.Variable(np.ones(3, np.float32))
    >>> opt = keras.optimizers.RMSprop(0.01, momentum=0.9)
    >>> g = np.array([0.5, -1.0, 2.0], np.float32)
    >>> opt.apply([g], [w])  # a Keras run, one step so far
    >>> params = [w.numpy()]
    >>> tx = optax_rmsprop.keras_rmsprop(0.01, momentum=0.9)
    >>> state = optax_rmsprop.keras.from_keras_variables(opt, params, tx)
    >>> updates, state = tx.update([g], state, params)
    >>> opt.apply([g], [w])  # the same second step, in Keras
    >>> bool(np.allclose(optax.apply_updates(params, updates)[0], w.numpy()))
    True

  References:
    Keras, `keras/src/optimizers/base_optimizer.py
    <https://github.com/keras-team/keras/blob/master/keras/src/optimizers/base_optimizer.py>`_
    (``build``, ``iterations``) and ``rmsprop.py`` (``build``).
  """
  _trees.check_transform("tx", tx)
  keras_state = _KerasState(
      _Layout(optimizer, optimizer_variables), params, variable_paths
  )
  calls = keras_state.calls
  steps = keras_state.steps
  template = tx.init(params)
  found = _Found()

  def like(tree, values):
    return jax.tree.map(
        lambda t, v: jax.device_put(np.asarray(v, t.dtype), t.sharding),
        tree,
        values,
    )

  def count_like(count, value):
    return jnp.asarray(value, count.dtype)

  def fill(one: _finder.Found) -> Any:
    node = one.state
    # Calls of the transform, or updates of the inner one under MultiSteps.
    updates_seen = calls if one.multisteps is None else calls // steps
    if isinstance(node, optax.MultiStepsState):  # its inner state filled
      found.multisteps += 1
      return node._replace(
          mini_step=count_like(node.mini_step, calls % steps),
          gradient_step=count_like(node.gradient_step, calls // steps),
          acc_grads=like(
              node.acc_grads, keras_state.tree("gradient_accumulator")
          ),
      )
    if isinstance(node, _keras_transforms.EmaParamsState):
      found.ema += 1
      return node._replace(
          count=count_like(node.count, calls),
          ema_params=like(node.ema_params, keras_state.tree("average")),
      )
    if isinstance(node, _RMS_STATES):
      found.rms += 1
      fields = {"nu": like(node.nu, keras_state.tree("velocity"))}
      if _finder.has_field(node, "mu"):
        fields["mu"] = like(node.mu, keras_state.tree("average_gradient"))
      found.centered = _finder.has_field(node, "mu")
      if _finder.has_field(node, "count"):
        fields["count"] = count_like(node.count, updates_seen)
      return node._replace(**fields)
    if isinstance(node, optax.TraceState):
      found.trace += 1
      momentum = jax.tree.map(np.negative, keras_state.tree("momentum"))
      return node._replace(trace=like(node.trace, momentum))
    # inject_hyperparams' or ScaleByScheduleState's count
    return node._replace(count=count_like(node.count, updates_seen))

  state = _finder.map_states(fill, template, _STATES, wrappers=_WRAPPERS)
  found.check(keras_state.layout)
  return state


def to_keras_variables(
    state: optax.OptState,
    optimizer: Any,
    *,
    optimizer_variables: Optional[Sequence[Any]] = None,
    variable_paths: Optional[Any] = None,
    iterations: Optional[int] = None,
) -> list[np.ndarray]:
  r"""Values for a Keras ``RMSprop``'s ``optimizer.variables`` from our state.

  The inverse of :func:`from_keras_variables`: for a state of
  :func:`keras_rmsprop` and a built Keras 3 ``keras.optimizers.RMSprop``
  with the same arguments, the list of values, in ``optimizer.variables``
  order, with which Keras continues the run:

  .. math::

    \begin{align*}
      \texttt{velocity} &\leftarrow \nu, \quad
      \texttt{average\_gradient} \leftarrow \mu, \quad
      \texttt{momentum} \leftarrow -m \\
      \texttt{average} &\leftarrow e, \quad
      \texttt{gradient\_accumulator} \leftarrow a, \quad
      \texttt{iteration} \leftarrow k \cdot \text{updates} +
        \text{mini\_step}
    \end{align*}

  ``iteration`` is the state's count of calls (the EMA's count, or
  ``optax.MultiSteps``' steps, or a schedule's count); a state with none
  (constant lr, no EMA, no accumulation: Keras' count then changes no
  number) takes ``iterations``, or keeps the optimizer's current value.
  ``learning_rate`` keeps the optimizer's current value. Write the values
  with ``for v, x in zip(optimizer.variables, values): v.assign(x)``, or
  pass them to ``optimizer.stateless_apply``; the params go into the model
  variables.

  Args:
    state: A state of :func:`keras_rmsprop` (found by type, also inside
      ``optax.inject_hyperparams`` or a larger chain).
    optimizer: A built ``keras.optimizers.RMSprop`` with the same arguments.
    optimizer_variables: Current values for ``optimizer.variables`` (for
      ``learning_rate`` and ``iteration``); default the variables' values.
    variable_paths: As in :func:`from_keras_variables`.
    iterations: Keras' ``iteration`` where the state holds no count.

  Returns:
    A list of NumPy arrays, one per ``optimizer.variables`` entry, each in
    that variable's dtype.

  Raises:
    ValueError: if the state and the optimizer do not match (missing or
      extra parts, shapes), or ``iterations`` disagrees with the state.

  Examples:
    >>> import os
    >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")
    >>> import keras
    >>> import numpy as np
    >>> import optax
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.keras_rmsprop(0.01, centered=True)
    >>> params = [np.ones(3, np.float32)]
    >>> g = [np.array([0.5, -1.0, 2.0], np.float32)]
    >>> state = tx.init(params)
    >>> updates, state = tx.update(g, state, params)  # a JAX run
    >>> params = optax.apply_updates(params, updates)
    >>> w = keras.Variable(np.asarray(params[0]))
    >>> opt = keras.optimizers.RMSprop(0.01, centered=True)
    >>> opt.build([w])
    >>> # a constant lr keeps no count: tell Keras this was call 1
    >>> values = optax_rmsprop.keras.to_keras_variables(
    ...     state, opt, iterations=1
    ... )
    >>> for variable, value in zip(opt.variables, values):
    ...   _ = variable.assign(value)
    >>> opt.apply(g, [w])  # Keras continues the run
    >>> updates, state = tx.update(g, state, params)
    >>> bool(np.allclose(optax.apply_updates(params, updates)[0], w.numpy()))
    True

  References:
    Keras, `keras/src/optimizers/base_optimizer.py
    <https://github.com/keras-team/keras/blob/master/keras/src/optimizers/base_optimizer.py>`_
    (``build``, ``stateless_apply``) and ``rmsprop.py`` (``build``).
  """
  layout = _Layout(optimizer, optimizer_variables)
  found = _Found()
  parts = {}
  calls = None  # Keras' iteration: the calls the state counted
  states, counters = _finder.find_states(state, _STATES, wrappers=_WRAPPERS)
  for one in states:
    node = one.state
    if isinstance(node, optax.MultiStepsState):
      found.multisteps += 1
      parts["gradient_accumulator"] = node.acc_grads
      multisteps = node
    elif isinstance(node, _keras_transforms.EmaParamsState):
      found.ema += 1
      parts["average"] = node.ema_params
      ema_count = node.count
    elif isinstance(node, _RMS_STATES):
      found.rms += 1
      parts["velocity"] = node.nu
      found.centered = _finder.has_field(node, "mu")
      if found.centered:
        parts["average_gradient"] = node.mu
      found.injected_momentum = one.hyperparams.get("momentum")
      rms_path = one.path
    else:
      found.trace += 1
      parts["momentum"] = jax.tree.map(jnp.negative, node.trace)
  found.check(layout)

  steps = layout.steps
  if found.ema:
    calls = int(ema_count)
  elif found.multisteps:
    calls = int(multisteps.gradient_step) * steps + int(multisteps.mini_step)
  else:  # each update is a call: the count of the updates
    count = _finder.nearest_count(counters, rms_path)
    calls = None if count is None else int(count)
  if iterations is not None:
    if calls is not None and calls != iterations:
      raise ValueError(
          f"iterations={iterations} but the state has made {calls} calls"
      )
    calls = iterations
  values = list(layout.values)
  if calls is not None:
    values[0] = np.asarray(calls, values[0].dtype)
  leaves = _leaf_order(parts["velocity"], variable_paths, layout)
  for block in layout.blocks:
    tree_leaves = jax.tree.leaves(parts[block])
    for leaf_index, keras_index in enumerate(leaves):
      position = layout.index(block, keras_index)
      values[position] = layout.checked(
          position, np.asarray(tree_leaves[leaf_index])
      )
  return values


class _Found:
  """What a walk over the optax state found, checked against Keras'."""

  def __init__(self):
    self.rms = self.trace = self.ema = self.multisteps = 0
    self.centered = False
    self.injected_momentum = None  # inject_hyperparams' value, if any

  def _why_trace(self, keras_has: bool) -> str:
    """The likely cause of a momentum buffer mismatch, for the message."""
    if keras_has:
      return " (keras_rmsprop has one only where tx.init saw momentum > 0)"
    if _switches.known_off(self.injected_momentum):
      return (
          " (its injected momentum is 0, but tx.init ran under jax.jit or"
          " jax.eval_shape, where that value is traced: call it eagerly)"
      )
    return ""

  def check(self, keras: "_Layout") -> None:
    if self.rms != 1:
      raise ValueError(
          f"the state has {self.rms} RMS states (ScaleByRmsState or"
          " ScaleByRStdDevState); expected the one of keras_rmsprop"
      )
    for what, count, block, argument in [
        (
            "a momentum buffer (TraceState)",
            self.trace,
            "momentum",
            "momentum > 0",
        ),
        ("a parameter EMA", self.ema, "average", "use_ema=True"),
        (
            "gradient accumulation (MultiStepsState)",
            self.multisteps,
            "gradient_accumulator",
            "gradient_accumulation_steps",
        ),
    ]:
      if count != int(keras.has(block)):
        why = self._why_trace(keras.has(block)) if block == "momentum" else ""
        raise ValueError(
            f"the state has {count} x {what}{why} but the Keras optimizer"
            f" {'has' if keras.has(block) else 'has no'} {block} variables:"
            f" build both with the same {argument}"
        )
    if self.centered != keras.has("average_gradient"):
      raise ValueError(
          f"centered={keras.has('average_gradient')} in Keras but"
          f" {self.centered} in the optax state"
      )


class _Layout:
  """Where each Keras variable sits in ``optimizer.variables``."""

  def __init__(self, optimizer, optimizer_variables):
    if not all(hasattr(optimizer, a) for a in ("rho", "centered", "variables")):
      raise ValueError(
          f"expected a keras.optimizers.RMSprop, got {type(optimizer).__name__}"
      )
    if not getattr(optimizer, "built", False):
      raise ValueError(
          "the Keras optimizer is not built: call"
          " optimizer.build(model.trainable_variables) first"
      )
    variables = list(optimizer.variables)
    self.names = [v.name for v in variables]
    if optimizer_variables is None:
      optimizer_variables = [v.numpy() for v in variables]
    if len(optimizer_variables) != len(variables):
      raise ValueError(
          f"{len(optimizer_variables)} optimizer_variables for"
          f" {len(variables)} optimizer.variables"
      )
    self.values = [np.asarray(v) for v in optimizer_variables]
    for value, variable in zip(self.values, variables):
      if value.shape != tuple(variable.shape):
        raise ValueError(
            f"optimizer_variables: {variable.name} has shape {value.shape},"
            f" expected {tuple(variable.shape)}"
        )
    self.steps = int(optimizer.gradient_accumulation_steps or 1)
    present = {
        "average": bool(optimizer.use_ema),
        "gradient_accumulator": self.steps > 1,
        "velocity": True,
        "momentum": optimizer.momentum > 0,
        "average_gradient": bool(optimizer.centered),
    }
    self.blocks = [b for b in _BLOCKS if present[b]]
    if self.names[:1] != ["iteration"]:
      raise ValueError(
          f"optimizer.variables[0] is {self.names[:1]}, expected 'iteration'"
      )
    self.header = 2 if self.names[1:2] == ["learning_rate"] else 1
    count, rest = divmod(len(self.names) - self.header, len(self.blocks))
    if rest:
      raise ValueError(
          f"optimizer.variables has {len(self.names)} entries, not"
          f" {self.header} + a multiple of {len(self.blocks)} ({self.blocks});"
          " variables with overwrite_with_gradient are not supported"
      )
    self.count = count
    self.keys = []  # Keras variable paths with "/" -> "_", in build order
    for block in self.blocks:
      suffix = "_" + block
      names = [self.names[self.index(block, i)] for i in range(count)]
      if not all(n.endswith(suffix) for n in names):
        raise ValueError(
            f"optimizer.variables {names} are not all *{suffix} variables"
        )
      if block == "velocity":
        self.keys = [n[: -len(suffix)] for n in names]

  def has(self, block: str) -> bool:
    return block in self.blocks

  def index(self, block: str, i: int) -> int:
    return self.header + self.blocks.index(block) * self.count + i

  def checked(self, position: int, value: np.ndarray) -> np.ndarray:
    expected = self.values[position]
    if value.shape != expected.shape:
      raise ValueError(
          f"{self.names[position]}: the state has shape {value.shape},"
          f" Keras {expected.shape}"
      )
    return value.astype(expected.dtype)


class _KerasState:
  """The Keras values of one optimizer, as trees shaped like ``params``."""

  def __init__(self, layout: _Layout, params, variable_paths):
    self.layout = layout
    self.calls = int(layout.values[0])
    self.steps = layout.steps
    self.leaves, self.treedef = jax.tree.flatten(params)
    self.order = _leaf_order(params, variable_paths, layout)
    for leaf, keras_index in zip(self.leaves, self.order):
      shape = layout.values[layout.index("velocity", keras_index)].shape
      if np.shape(leaf) != shape:
        raise ValueError(
            f"params leaf of shape {np.shape(leaf)} matched to Keras variable"
            f" {layout.keys[keras_index]!r} of shape {shape}"
        )

  def tree(self, block: str):
    if not self.layout.has(block):
      raise ValueError(f"the Keras optimizer has no {block} variables")
    return jax.tree.unflatten(
        self.treedef,
        [self.layout.values[self.layout.index(block, i)] for i in self.order],
    )


def _leaf_order(tree, variable_paths, layout: _Layout) -> list[int]:
  """For each leaf of ``tree``, the index of its Keras trainable variable."""
  n = len(jax.tree.leaves(tree))
  if n != layout.count:
    raise ValueError(
        f"params have {n} leaves, the Keras optimizer {layout.count} variables"
    )
  if variable_paths is None:
    return list(range(n))
  paths = jax.tree.leaves(variable_paths)
  if len(paths) != n:
    raise ValueError(f"variable_paths has {len(paths)} leaves, params {n}")
  order = []
  for path in paths:
    key = str(path).replace("/", "_")
    if key not in layout.keys:
      raise ValueError(
          f"no Keras variable with path {path!r} (the optimizer has"
          f" {layout.keys})"
      )
    order.append(layout.keys.index(key))
  return order
