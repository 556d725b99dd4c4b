"""`torch_param_groups`: a torch optimizer's parameter groups, in one call."""

from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping, Sequence, Union

import jax
import optax

from optax_rmsprop._ports.torch import preset as _torch_preset
from optax_rmsprop._rules import trees as _trees


def torch_param_groups(
    groups: Union[
        Sequence[Mapping[str, Any]], Mapping[Hashable, Mapping[str, Any]]
    ],
    labels: Union[Any, Callable[[optax.Params], Any]],
    **defaults: Any,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.RMSprop(param_groups, **defaults)``: one preset per group.

  PyTorch takes a list of parameter groups, each a dict of hyperparameters
  that override the optimizer's keyword arguments for that group's
  parameters. Here each group's hyperparameters build one
  :func:`torch_rmsprop`, and ``optax.partition`` applies it to the leaves
  ``labels`` assigns to that group. For a leaf :math:`p` with label
  :math:`k` and the hyperparameters :math:`\theta_k` = ``defaults`` updated
  by ``groups[k]``:

  .. math::

    p_t \leftarrow p_{t-1} + u_t, \qquad
    (u_t, s^k_t) = \mathrm{torch\_rmsprop}_{\theta_k}
      (g_t, s^k_{t-1}, p_{t-1})

  restricted to the leaves labelled :math:`k` (:math:`s^k`: group
  :math:`k`'s state, which holds only its leaves). As in PyTorch, a group's
  ``lr``, ``weight_decay``, ``momentum``, ``alpha``, ``eps``, ``centered``
  and ``maximize`` are independent of the others'; an lr schedule is given per
  group (a torch scheduler scales each group's own lr, so each group gets
  the schedule built from its lr).

  Args:
    groups: PyTorch's parameter-group dicts without their ``"params"``: a
      sequence (the labels are then the indices 0, 1, ...) or a mapping from
      label to dict. Each dict holds :func:`torch_rmsprop` keyword arguments.
    labels: A pytree of labels matching the params (or a prefix of them), or
      a function of the params returning one: the group of each leaf, as in
      ``optax.partition``.
    **defaults: :func:`torch_rmsprop` keyword arguments for every group (the
      ``torch.optim.RMSprop(...)`` keyword arguments).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` (``optax.partition``);
    ``update`` needs ``params`` where a group has weight decay.

  Raises:
    ValueError: for an empty ``groups``, or a group dict with ``"params"``
      (the leaves are chosen by ``labels``); the presets' own errors for a
      bad hyperparameter.

  Examples:
    torchvision's classification recipe puts no weight decay on biases and
    norm layers. In PyTorch::

      RMSprop([{"params": weights, "weight_decay": 1e-5},
               {"params": biases_and_norms, "weight_decay": 0.0}],
              lr=0.064, alpha=0.9, eps=0.0316, momentum=0.9)

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    >>> labels = lambda p: jax.tree.map(lambda x: int(x.ndim < 2), p)
    >>> tx = optax_rmsprop.torch.torch_param_groups(
    ...     [{"weight_decay": 1e-5}, {"weight_decay": 0.0}], labels,
    ...     lr=0.064, alpha=0.9, eps=0.0316, momentum=0.9)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jax.tree.map(jnp.ones_like, params),
    ...                            state, params)
    >>> updates["b"]  # -lr g / (sqrt(0.1 g^2) + eps)
    Array([-0.18399..., -0.18399...], dtype=float32)

  References:
    PyTorch, `Per-parameter options
    <https://pytorch.org/docs/stable/optim.html#per-parameter-options>`_;
    torchvision's `classification reference
    <https://github.com/pytorch/vision/tree/main/references/classification>`_
    (``set_weight_decay``).
  """
  if labels is None:
    raise TypeError(
        "labels must be a tree of group labels matching the params, or a"
        " function of the params returning one, got None"
    )
  if not isinstance(groups, (Mapping, Sequence)) or isinstance(
      groups, (str, bytes)
  ):
    raise TypeError(
        f"groups must be a list or a mapping of dicts, got {groups!r}"
    )
  items = list(
      groups.items() if isinstance(groups, Mapping) else enumerate(groups)
  )
  for label, overrides in items:
    if not isinstance(overrides, Mapping):
      raise TypeError(
          f"groups[{label!r}] must be a dict of torch_rmsprop arguments, got"
          f" {overrides!r}"
      )
  if not items:
    raise ValueError("groups is empty: give at least one parameter group")
  transforms = {}
  for label, overrides in items:
    if "params" in overrides:
      raise ValueError(
          f"group {label!r} has 'params': drop it, the leaves of each group"
          " are chosen by `labels` (a label per params leaf)"
      )
    transforms[label] = _torch_preset.torch_rmsprop(**{**defaults, **overrides})
  return _checked_labels(transforms, labels, set(transforms))


def _checked_labels(transforms, labels, known):
  """``optax.partition(transforms, labels)`` with ``labels`` checked against
  the params first: a prefix of their tree, every label one of the groups'.

  A labels function is called on the params, as documented, at update too:
  ``optax.partition`` would call it on the updates, where a frozen param's
  None gradient gives a None label.
  """
  tx = optax.partition(transforms, labels)

  def check(tree):
    tree_labels = labels(tree) if callable(labels) else labels
    _trees.check_prefix("labels", tree_labels, tree)
    unknown = {
        label for label in jax.tree.leaves(tree_labels) if label not in known
    }
    if unknown:
      raise ValueError(
          f"labels has {sorted(map(repr, unknown))}, which name no group"
          f" (groups: {sorted(map(repr, known))})"
      )

  def init_fn(params):
    check(params)
    return tx.init(params)

  def update_fn(updates, state, params=None, **extra_args):
    if params is None or not callable(labels):
      check(updates)
      return tx.update(updates, state, params, **extra_args)
    tree_labels = labels(params)
    check(params)
    return optax.partition(transforms, tree_labels).update(
        updates, state, params, **extra_args
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
