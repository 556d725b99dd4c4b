"""The public API: a small top level, documented namespaces, importable."""

import inspect

import optax_rmsprop
from public_api import namespaces
from public_api import public_names
from public_api import resolve

NAMESPACES = {"keras", "tools", "torch"}


def test_top_level_is_the_core_presets_and_rms_stats():
  assert sorted(optax_rmsprop.__all__) == sorted(set(optax_rmsprop.__all__))
  assert set(optax_rmsprop.__all__) == {
      "rmsprop", "scale_by_rms", "momentum", "add_decoupled_weight_decay",
      "torch_rmsprop", "keras_rmsprop", "tf1_rmsprop", "timm_rmsprop_tf",
      "dqn_rmsprop", "rms_stats",
  }
  public = {n for n in vars(optax_rmsprop) if not n.startswith("_")}
  assert public == set(optax_rmsprop.__all__) | NAMESPACES
  assert {m.__name__ for m in namespaces()} == {
      f"optax_rmsprop.{n}" for n in NAMESPACES
  }


def test_namespaces_export_what_they_list_and_nothing_private():
  for module in namespaces():
    assert module.__doc__, module.__name__
    public = {n for n in vars(module) if not n.startswith("_")}
    assert public == set(module.__all__), module.__name__


def test_public_functions_document_math_example_and_references():
  for name in public_names():
    obj = resolve(name)
    if not inspect.isfunction(obj):
      continue
    doc = inspect.getdoc(obj) or ""
    assert ".. math::" in doc, f"{name}: no update equations"
    assert ">>>" in doc, f"{name}: no runnable example"
    assert "References:" in doc, f"{name}: no references"
