"""The optax classes this package needs and optax does not export.

Each is obtained from a public optax function, never imported from a private
module or recognised by name, so that an optax release that moves or renames
one breaks here, at import, with a test (tests/test_optax_compat.py) saying
which; the rest of the package imports them from this module only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def _placeholder() -> Any:
  """The object :func:`optax.tree.map_params` passes to ``init``."""
  seen = []

  def init(params):
    seen.append(params)
    return ()

  optax.tree.map_params(init, id, ())
  return seen[0]


# A childless pytree node standing for the params: ``tx.init`` run on it
# returns the state with one in each slot that mirrors the params.
ParamsPlaceholder: Any = type(_placeholder())


def params_placeholder() -> Any:
  """A new instance of :data:`ParamsPlaceholder`."""
  return ParamsPlaceholder()


# The (real, imaginary) pair that optax.contrib.split_real_and_imaginary
# stores for each complex leaf: the state of optax.trace on a complex param.
SplitRealAndImaginaryArrays: Any = type(
    optax.contrib.split_real_and_imaginary(optax.trace(0.0))
    .init(jnp.zeros((), jnp.complex64))
    .inner_state.trace
)

# The per-schedule state (``count``) that optax.inject_hyperparams keeps in
# ``hyperparams_states`` for a schedule of the count (optax.WrappedSchedule).
WrappedScheduleState: Any = type(optax.WrappedSchedule(lambda count: 0).init())

# optax.scale_by_rms / scale_by_stddev's states with bias correction (a
# ``count`` first). eval_shape: the type only, no computation at import.
ScaleByRmsWithCountState: Any = type(
    jax.eval_shape(optax.scale_by_rms(bias_correction=True).init, {})
)
ScaleByRStdDevWithCountState: Any = type(
    jax.eval_shape(optax.scale_by_stddev(bias_correction=True).init, {})
)
