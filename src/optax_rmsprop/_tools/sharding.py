"""`init_sharded`: optimizer state laid out like the params, under any mesh."""

from __future__ import annotations

from typing import Any

import jax
import optax

from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._tools import stacked as _stacked


def _replicated_like(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding:
  """A sharding on the same devices as ``sharding`` that replicates scalars."""
  if isinstance(sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(
        sharding.mesh, jax.sharding.PartitionSpec()
    )
  return sharding  # e.g. SingleDeviceSharding: already one full copy.


def state_shardings(
    tx: optax.GradientTransformation, params: optax.Params
) -> Any:
  r"""The shardings :func:`init_sharded` gives ``tx.init(params)``'s state.

  Every params-shaped tree in the state gets the params' shardings; every
  other leaf (step counts, injected hyperparameters) is replicated on the
  first param's devices. A :func:`stack_leaves` state's stacked arrays get
  their group's sharding with an unsharded leading axis:

  .. math::

    \mathrm{sharding}(s_i) = \begin{cases}
      \mathrm{sharding}(p_j) & \text{if } s_i \text{ mirrors param } p_j \\
      \text{replicated} & \text{otherwise.}
    \end{cases}

  The tree doubles as the layout of an Orbax restore target.

  Args:
    tx: An optax transformation; :func:`optax.tree_map_params` finds its
      params-shaped subtrees.
    params: Arrays, or :class:`jax.ShapeDtypeStruct` with ``sharding`` set.

  Returns:
    A tree of :class:`jax.sharding.Sharding` with the state's structure.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> mesh = jax.make_mesh((1,), ('data',))
    >>> sharding = jax.sharding.NamedSharding(mesh, jax.P('data'))
    >>> params = jax.device_put(jnp.zeros(4), sharding)
    >>> tx = optax_rmsprop.rmsprop(0.1, bias_correction=True)
    >>> state_shardings(tx, params)[0].nu.spec
    P('data',)
    >>> state_shardings(tx, params)[0].count.spec
    P()

  References:
    `optax#548 <https://github.com/google-deepmind/optax/issues/548>`_
    (optimizer state follows the params' sharding).
  """
  _trees.check_transform("tx", tx)
  params = _trees.as_arrays(params)
  param_shardings = _trees.map_leaves(lambda p: p.sharding, params)
  flat = jax.tree.leaves(param_shardings, is_leaf=_trees.is_none)
  present = [s for s in flat if s is not None]
  if present:
    replicated = _replicated_like(present[0])
  else:  # nothing to copy a layout from (e.g. empty params)
    replicated = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def non_params(value):
    if isinstance(value, _stacked.StackLeavesState):
      return _stacked.stacked_shardings(value, flat, replicated)
    return jax.tree.map(lambda _: replicated, value)

  with _stacked.sharding_context(flat):
    abstract = jax.eval_shape(tx.init, params)
  with _stacked.sharding_context(flat, mapping=True):
    return optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        abstract,
        param_shardings,
        transform_non_params=non_params,
        is_leaf=_trees.is_none,
    )


def init_sharded(
    tx: optax.GradientTransformation, params: optax.Params
) -> optax.OptState:
  r"""``tx.init(params)``, compiled with the state sharded like ``params``.

  Under an ordinary (auto) mesh, ``jax.jit(tx.init)(params)`` cannot see the
  params' shardings at trace time and the state's zeros depend on no input,
  so XLA puts every state array on one device (or replicates it under
  ``jax.set_mesh``): :math:`k` full copies of the model where a
  :math:`1/n`-th shard was meant. This compiles ``tx.init`` with
  ``out_shardings`` = :func:`state_shardings`, so each device only ever
  allocates its own shard:

  .. math::

    s_0 \leftarrow \mathrm{jit}(\texttt{tx.init},\
      \texttt{out\_shardings}=\mathrm{sharding}(s))(p)

  Args:
    tx: An optax transformation.
    params: Sharded arrays (concrete: their shardings are read).

  Returns:
    The initial state, with :func:`state_shardings`' layout.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> mesh = jax.make_mesh((1,), ('data',))
    >>> sharding = jax.sharding.NamedSharding(mesh, jax.P('data'))
    >>> params = {'w': jax.device_put(jnp.zeros(4), sharding)}
    >>> tx = optax_rmsprop.rmsprop(0.1, momentum=0.9)
    >>> state = init_sharded(tx, params)
    >>> state[0].nu['w'].sharding == sharding
    True

  References:
    `optax#548 <https://github.com/google-deepmind/optax/issues/548>`_.
  """
  params = _trees.as_arrays(params)
  shardings = state_shardings(tx, params)
  flat = jax.tree.leaves(
      _trees.map_leaves(lambda p: p.sharding, params), is_leaf=_trees.is_none
  )
  with _stacked.sharding_context(flat):  # stack_leaves groups by sharding
    return jax.jit(tx.init, out_shardings=shardings)(params)
