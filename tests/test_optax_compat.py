"""Only optax's public API, so that an optax release cannot break us silently.

The classes optax does not export are derived from public functions in one
module, ``_rules/optax_compat.py``; these tests check, on the installed optax, that
no other module reaches into optax's private modules or recognises a class by
its name, and that what the derived classes are used for works.
"""

import pathlib
import re

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_rmsprop

SRC = pathlib.Path(optax_rmsprop.__file__).parent

# `optax._src`, `optax.contrib._complex_valued`, `from optax.x import _y`,
# and `type(x).__name__ == "_Private"`.
PRIVATE = re.compile(
    r"optax(\.\w+)*\._\w+"
    r"|from\s+optax(\.\w+)*\s+import\s+\(?\s*_\w+"
    r"|__name__\s*==\s*['\"]_"
)


@pytest.mark.parametrize(
    "path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_no_private_optax_api(path):
  """Guards issue #17 part 4: private optax imports and class-name checks
  (the torch converters imported optax.contrib._complex_valued and
  optax.schedules._inject; stack_leaves matched `_ParamsPlaceholder`)."""
  hits = [
      f"{path.name}:{n}: {line.strip()}"
      for n, line in enumerate(path.read_text().splitlines(), 1)
      if PRIVATE.search(line)
  ]
  assert not hits, "\n".join(hits)


def test_complex_state_and_schedule_counts_convert():
  """The classes taken from optax's public functions are the ones its
  states hold: a complex parameter's split pair and an injected schedule's
  count both go to torch and come back."""
  pytest.importorskip("torch")
  schedule = optax.exponential_decay(0.01, 1, 0.9)
  tx = optax.inject_hyperparams(
      optax_rmsprop.torch_rmsprop, hyperparam_dtype=jnp.float32
  )(lr=schedule, momentum=0.9)
  params = {"z": jnp.array([1 + 2j, -0.5j], jnp.complex64)}
  state = tx.init(params)
  for _ in range(3):
    _, state = tx.update({"z": jnp.array([0.5 - 1j, 2j])}, state, params)
  groups = [{"params": [0], "momentum": 0.9, "centered": False}]
  back = optax_rmsprop.torch.to_torch_state_dict(state, params, groups)
  assert back["state"][0]["momentum_buffer"].is_complex()
  restored = optax_rmsprop.torch.from_torch_state_dict(back, tx, params)
  assert int(restored.hyperparams_states["lr"].count) == 3
  np.testing.assert_array_equal(
      optax.tree_utils.tree_get(restored, "nu")["z"].real,
      optax.tree_utils.tree_get(state, "nu")["z"].real,
  )


def test_tree_map_params_on_stack_leaves_is_recognised():
  """stack_leaves knows optax's params placeholder by type, not by name."""
  tx = optax_rmsprop.tools.stack_leaves(optax_rmsprop.rmsprop(0.1))
  state = tx.init({"a": jnp.ones(3)})
  with pytest.raises(TypeError, match="state_shardings"):
    optax.tree_map_params(tx, lambda x: x, state)


@pytest.mark.parametrize("centered", [False, True])
def test_bias_corrected_state_is_optaxs_class(centered):
  """The ...WithCountState classes optax does not export: ours are its own
  (a bias-corrected optax state continues under ours and back)."""
  import jax.numpy as jnp

  params = jnp.ones(3)
  ours = optax_rmsprop.scale_by_rms(centered=centered, bias_correction=True)
  make = optax.scale_by_stddev if centered else optax.scale_by_rms
  theirs = make(bias_correction=True)
  state = theirs.init(params)
  assert type(ours.init(params)) is type(state)
  _, new_state = ours.update(jnp.full(3, 0.5), state)
  assert type(new_state) is type(state) and int(new_state.count) == 1
