"""The package's layers, and which may import which (CONTRIBUTING.md).

  _rules  numerics, validation, trees, optax compatibility: import nothing
          of this package
  _core   the RMS scaling, the optimizer and its small transforms: _rules
  _tools  inspection, stacking and sharding, row-sparse and cautious
          wrappers: _core, _rules
  _ports  one place per framework (preset, arguments, schedules, state
          conversion): _tools, _core, _rules, the ports' shared
          ``switches``, and its own framework's modules, no other port's
  the public modules (``__init__``, ``torch``, ``keras``, ``tools``):
          anything
"""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "optax_rmsprop"
ALLOWED = {
    "_rules": {"_rules"},
    "_core": {"_rules", "_core"},
    "_tools": {"_rules", "_core", "_tools"},
    "_ports": {"_rules", "_core", "_tools", "_ports"},
}
MODULES = sorted(p for p in SRC.rglob("*.py"))


def imported_modules(source: str) -> set[str]:
  """``optax_rmsprop.<...>`` modules ``source`` imports, at any depth (lazy
  imports inside functions included), as dotted paths below the package."""
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom) and node.module:
      if node.module == "optax_rmsprop":
        found |= {alias.name for alias in node.names}
      elif node.module.startswith("optax_rmsprop."):
        base = node.module.removeprefix("optax_rmsprop.")
        found |= {f"{base}.{alias.name}" for alias in node.names}
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith("optax_rmsprop."):
          found.add(alias.name.removeprefix("optax_rmsprop."))
  return found


def framework(parts: tuple[str, ...]) -> str:
  """The framework a module under _ports belongs to ("torch", "tf1"), or
  "" for the ports' shared modules."""
  name = parts[1].removesuffix(".py")
  return "" if name in ("switches", "__init__") else name


def violations(parts: tuple[str, ...], source: str) -> list[str]:
  """The forbidden imports of the module at ``parts`` (below the package)."""
  layer = parts[0]
  if layer not in ALLOWED:  # a public module
    return []
  bad = []
  for target in imported_modules(source):
    target_parts = tuple(target.split("."))
    if target_parts[0] not in ALLOWED[layer]:
      bad.append(f"{layer} imports {target}")
    elif layer == target_parts[0] == "_ports" and len(target_parts) > 1:
      own, theirs = framework(parts), framework(target_parts)
      if theirs and own != theirs:
        bad.append(f"the {own or 'shared'} port imports the {theirs} port")
  return bad


@pytest.mark.parametrize(
    "path", MODULES, ids=lambda p: str(p.relative_to(SRC))
)
def test_module_imports_only_layers_below(path):
  assert not violations(path.relative_to(SRC).parts, path.read_text())


def test_every_module_is_in_a_layer_or_public():
  public = {"__init__.py", "torch.py", "keras.py", "tools.py"}
  for path in MODULES:
    parts = path.relative_to(SRC).parts
    assert parts[0] in ALLOWED or (len(parts) == 1 and parts[0] in public), (
        path
    )


@pytest.mark.parametrize(
    "module,source,expected",
    [
        (("_core", "x.py"), "from optax_rmsprop._ports.torch import preset",
         ["_core imports _ports.torch.preset"]),
        (("_rules", "x.py"), "from optax_rmsprop._core import programs",
         ["_rules imports _core.programs"]),
        (("_tools", "x.py"),
         "def f():\n  from optax_rmsprop import _ports\n",
         ["_tools imports _ports"]),
        (("_ports", "torch", "x.py"),
         "from optax_rmsprop._ports.keras import variables",
         ["the torch port imports the keras port"]),
        (("_ports", "tf1.py"), "import optax_rmsprop._ports.timm",
         ["the tf1 port imports the timm port"]),
        (("_ports", "tf1.py"),
         "from optax_rmsprop._ports import switches\n"
         "from optax_rmsprop._tools import lazy_rows", []),
    ],
)
def test_the_check_sees_forbidden_imports(module, source, expected):
  """The rule is not vacuous: forbidden imports written into a module, even
  inside a function, are reported; allowed ones are not."""
  assert violations(module, source) == expected
