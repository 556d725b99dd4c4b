"""The public API: flat, documented, and importable."""

import inspect

import optax_rmsprop


def test_all_names_exist_and_nothing_private_leaks():
  assert sorted(optax_rmsprop.__all__) == sorted(set(optax_rmsprop.__all__))
  for name in optax_rmsprop.__all__:
    assert hasattr(optax_rmsprop, name), name
  public = {n for n in vars(optax_rmsprop) if not n.startswith("_")}
  assert public <= set(optax_rmsprop.__all__)


def test_public_functions_document_math_example_and_references():
  for name in optax_rmsprop.__all__:
    obj = getattr(optax_rmsprop, name)
    if not inspect.isfunction(obj):
      continue
    doc = inspect.getdoc(obj) or ""
    assert ".. math::" in doc, f"{name}: no update equations"
    assert ">>>" in doc, f"{name}: no runnable example"
    assert "References:" in doc, f"{name}: no references"
