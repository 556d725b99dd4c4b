"""pytest plugin: optax's own tests, with optax_rmsprop in optax's place.

Loaded with ``-p substitute_optax_rmsprop`` before optax's test modules are
imported (they bind ``transform.scale_by_rms`` etc. at import time), it
replaces optax's ``rmsprop``, ``scale_by_rms`` and ``scale_by_stddev``
everywhere they can be looked up. ``SUBSTITUTED_CALLS`` counts the calls,
so the test can check that ours, not optax's, ran.
"""

import collections
import functools

import optax
from optax._src import alias
from optax._src import transform

import optax_rmsprop

SUBSTITUTED_CALLS = collections.Counter()

# optax's positional order (ours has `centered` before `bias_correction`).
_OPTAX_SCALER_ARGS = (
    "decay", "eps", "initial_scale", "eps_in_sqrt", "bias_correction"
)


def _scaler(name, centered):
  def make(*args, **kwargs):
    SUBSTITUTED_CALLS[name] += 1
    kwargs.update(zip(_OPTAX_SCALER_ARGS, args))
    return optax_rmsprop.scale_by_rms(centered=centered, **kwargs)

  return make


@functools.wraps(optax_rmsprop.rmsprop)
def _rmsprop(*args, **kwargs):
  SUBSTITUTED_CALLS["rmsprop"] += 1
  return optax_rmsprop.rmsprop(*args, **kwargs)


optax.rmsprop = alias.rmsprop = _rmsprop
for module in (optax, transform):
  module.scale_by_rms = _scaler("scale_by_rms", centered=False)
  module.scale_by_stddev = _scaler("scale_by_stddev", centered=True)


def pytest_collection_modifyitems(config, items):
  """Keeps the tests of the substituted functions only.

  absl's parameterized tests are named by index (``test_optimization12``),
  so the optimizer is read from the parameters each one was generated with.
  """
  del config
  names = ("rmsprop", "scale_by_rms", "scale_by_stddev", "rms_match")
  keep = []
  for item in items:
    params = getattr(item.obj, "__x_params_repr__", "")
    if any(n in item.name or n in params for n in names):
      keep.append(item)
  items[:] = keep


def pytest_sessionfinish(session, exitstatus):
  del exitstatus
  print(f"\noptax_rmsprop substituted: {dict(SUBSTITUTED_CALLS)}")
  if session.testscollected and not SUBSTITUTED_CALLS:
    session.exitstatus = 1
