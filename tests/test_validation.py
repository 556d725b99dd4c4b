"""Bad hyperparameters fail when the optimizer is built; traced ones pass."""

import jax
import jax.numpy as jnp
import optax
import pytest

import optax_rmsprop

BAD = [
    ("learning_rate", dict(learning_rate=-1e-3)),
    ("learning_rate", dict(learning_rate=float("nan"))),
    ("decay", dict(decay=-0.1)),
    ("decay", dict(decay=1.5)),
    ("eps", dict(eps=-1e-8)),
    ("initial_scale", dict(initial_scale=-1.0)),
    ("momentum", dict(momentum=1.0)),
    ("momentum", dict(momentum=-0.5)),
    ("nesterov", dict(nesterov=True)),
    ("coupled_weight_decay", dict(coupled_weight_decay=-1e-4)),
    ("decoupled_weight_decay", dict(decoupled_weight_decay=-1e-4)),
    ("decay", dict(decay=jnp.array(2.0))),  # concrete arrays are checked too
]


@pytest.mark.parametrize("name,kwargs", BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_hyperparameter_names_argument_and_value(name, kwargs):
  kwargs = {"learning_rate": 1e-3, **kwargs}
  with pytest.raises(ValueError, match=name) as info:
    optax_rmsprop.rmsprop(**kwargs)
  if name != "nesterov":
    assert repr(kwargs[name]) in str(info.value)


def test_scale_by_rms_validates():
  with pytest.raises(ValueError, match="decay"):
    optax_rmsprop.scale_by_rms(decay=1.01)
  with pytest.raises(ValueError, match="weight_decay"):
    optax_rmsprop.add_decoupled_weight_decay(0.1, -1.0)


def test_boundaries_are_accepted():
  optax_rmsprop.rmsprop(0.0, decay=0.0, eps=0.0, momentum=0.0)
  optax_rmsprop.rmsprop(1.0, decay=1.0, momentum=0.999, nesterov=True)
  optax_rmsprop.rmsprop(optax.constant_schedule(0.1))


def test_traced_hyperparameters_skip_the_check():
  params = jnp.ones(3)

  @jax.jit
  def build_and_step(lr, decay):
    tx = optax_rmsprop.rmsprop(lr, decay=decay, momentum=0.9)
    return tx.update(params, tx.init(params), params)[0]

  # A negative traced lr cannot be seen at build time; it just runs.
  assert build_and_step(-1.0, 0.9).shape == (3,)
  tx = optax.inject_hyperparams(optax_rmsprop.rmsprop)(1e-3, momentum=0.9)
  jax.jit(tx.update)(params, tx.init(params), params)


def test_gradient_tree_mismatch_is_a_clear_error():
  tx = optax_rmsprop.rmsprop(1e-3)
  state = tx.init({"a": jnp.ones(2), "b": jnp.ones(3)})
  with pytest.raises(ValueError, match="does not match the optimizer state"):
    tx.update({"a": jnp.ones(2)}, state)
  with pytest.raises(ValueError, match=r"\['b'\] has shape \(1,\)"):
    tx.update({"a": jnp.ones(2), "b": jnp.ones(1)}, state)


def test_decoupled_weight_decay_needs_params():
  tx = optax_rmsprop.rmsprop(1e-3, decoupled_weight_decay=1e-2)
  with pytest.raises(ValueError, match="needs the params"):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_complex_gradient_for_a_real_param_is_rejected():
  """Storing a complex average in a real buffer would drop its imaginary
  part silently."""
  tx = optax_rmsprop.rmsprop(0.1, momentum=0.9)
  state = tx.init(jnp.zeros(2))
  with pytest.raises(ValueError, match="complex"):
    tx.update(jnp.array([1j, 1.0], jnp.complex64), state)


@pytest.mark.parametrize(
  "make,name",
  [
    (lambda v: optax_rmsprop.rmsprop(v), "learning_rate"),
    (lambda v: optax_rmsprop.scale_by_rms(eps=v), "eps"),
    (
      lambda v: optax_rmsprop.rmsprop(0.1, coupled_weight_decay=v),
      "coupled_weight_decay",
    ),
    (
      lambda v: optax_rmsprop.torch.torch_onecycle_schedules(0.1, 10, max_momentum=v),
      "max_momentum",
    ),
  ],
)
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_hyperparameters_are_rejected_by_the_finiteness_check(make, name, value):
  """+inf passes a lower bound (inf >= 0) and an absent upper one: only the
  explicit finiteness check rejects it."""
  with pytest.raises(ValueError, match=f"{name} must be finite"):
    make(value)


@pytest.mark.parametrize("leaf", [1.0, "yes", jnp.ones(3, bool)])
def test_a_mask_leaf_that_is_not_a_bool_is_rejected(leaf):
  """optax.masked would take 1.0 or a string as true, and a bool array as
  per-element: a mask leaf must be one bool (a Python/NumPy bool or a
  scalar bool array), and anything else names the argument and the leaf."""
  params = {"w": jnp.ones(3), "b": jnp.ones(2)}
  tx = optax_rmsprop.rmsprop(
    0.1, coupled_weight_decay=0.1, weight_decay_mask={"w": leaf, "b": False}
  )
  with pytest.raises(TypeError, match=r"weight_decay_mask at \['w'\] must be a bool"):
    tx.update(params, tx.init(params), params)


def test_complex_gradient_for_real_params_is_rejected_without_momentum():
  """Plain rmsprop keeps only a real ν: the params tell that the parameter
  is real, and apply_updates would silently drop the imaginary part."""
  tx = optax_rmsprop.rmsprop(0.01)
  params = jnp.ones(3)
  grads = jnp.ones(3, jnp.complex64)
  with pytest.raises(ValueError, match="complex but its parameter was real"):
    tx.update(grads, tx.init(params), params)
  complex_params = jnp.ones(3, jnp.complex64)
  updates, _ = tx.update(grads, tx.init(complex_params), complex_params)
  assert updates.dtype == jnp.complex64


def test_weight_decay_mask_without_weight_decay_is_an_error():
  with pytest.raises(ValueError, match="weight_decay_mask needs"):
    optax_rmsprop.rmsprop(0.01, weight_decay_mask={"w": True})
