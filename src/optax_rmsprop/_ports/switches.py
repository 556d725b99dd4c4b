"""Argument handling shared by the framework presets.

PyTorch, Keras and timm allocate a momentum buffer only for momentum > 0 and
skip weight decay (and Keras clipping) at 0, so the presets' state depends on
hyperparameter *values*. Under ``optax.inject_hyperparams`` those values are
arrays: concrete when ``init`` runs eagerly, traced in a jitted ``update``.
So whether a feature exists is decided once, by ``init``, from the value (a
concrete 0 is off, a traced one on), and ``update`` follows the state it is
given: a preset has the same state, and the same numbers, with its
hyperparameters given as Python numbers or injected.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Optional

import jax
import numpy as np
import optax

from optax_rmsprop._rules import optax_compat as _optax_compat


def known_on(value: Any) -> Optional[bool]:
  """Whether the feature ``value`` controls is on, if that is known now.

  False for None and a concrete 0 (Python, NumPy or a concrete jax array),
  True for a concrete nonzero value or a schedule, None for a traced value.
  """
  if value is None:
    return False
  if callable(value):
    return True
  if isinstance(value, jax.core.Tracer):
    return None
  return bool(np.asarray(value).any())


def known_off(value: Any) -> bool:
  """Whether ``value`` is a concrete 0 now (not None, a schedule or traced):
  a feature switched off by a value given, e.g. an injected momentum."""
  return value is not None and known_on(value) is False


def _fits(skeleton: Any, state: Any) -> bool:
  """Whether ``state`` has the structure of ``skeleton`` (an ``init`` on the
  params placeholder), whatever the params tree in each placeholder slot."""
  try:
    jax.tree.map(
        lambda *_: None,
        skeleton,
        state,
        is_leaf=lambda x: isinstance(x, _optax_compat.ParamsPlaceholder),
    )
  except (ValueError, TypeError):
    return False
  return True


def init_decides(
    build: Callable[[dict[str, bool]], optax.GradientTransformation],
    **values: Any,
) -> optax.GradientTransformationExtraArgs:
  """``build(on)``, with ``on[name]`` (is that feature on?) set by ``init``.

  ``values`` maps each switch to the hyperparameter that controls it, under
  the preset's argument name. ``init`` builds with ``known_on(value)``
  (traced: on). ``update`` builds with the flags whose ``init`` state has
  the structure of the state it is given, so a state keeps the features it
  was created with; a feature that is off there while its value is known to
  be nonzero is a ValueError naming the argument.

  Args:
    build: Returns the transformation for a dict of flags, keyed as
      ``values``.
    **values: The hyperparameter of each switch.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is
    ``build(...)``'s, the same as without the switch.
  """
  names = tuple(values)
  wanted = tuple(known_on(values[k]) is not False for k in names)
  # The values' own flags first: with Python numbers they are the state's.
  combos = sorted(
      itertools.product((True, False), repeat=len(names)),
      key=lambda combo: combo != wanted,
  )
  built: dict[tuple[bool, ...], optax.GradientTransformationExtraArgs] = {}
  skeletons: dict[tuple[bool, ...], Any] = {}

  def tx_for(combo):
    if combo not in built:
      built[combo] = optax.with_extra_args_support(
          build(dict(zip(names, combo)))
      )
    return built[combo]

  def flags_of(state):
    for combo in combos:
      if combo not in skeletons:
        skeletons[combo] = tx_for(combo).init(
            _optax_compat.params_placeholder()
        )
      if _fits(skeletons[combo], state):
        break
    else:  # not this optimizer's state: let the transform say what is wrong
      return wanted
    for name, on in zip(names, combo):
      if not on and known_on(values[name]):
        raise ValueError(
            f"{name}={values[name]!r}, but the optimizer state has no room"
            f" for it: it was initialised with {name}=0 (or None), which"
            " turns the feature off. Call tx.init with this optimizer, or"
            f" keep {name} at 0 for this state."
        )
    return combo

  def init_fn(params):
    return tx_for(wanted).init(params)

  def update_fn(updates, state, params=None, **extra_args):
    return tx_for(flags_of(state)).update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
