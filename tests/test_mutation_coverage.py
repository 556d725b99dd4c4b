"""Every module in src/ has mutants in tools/mutate.py; every mutant applies.

A cheap CI guard for the mutation runner (the full run stays a script:
``python tools/mutate.py``): a module with code needs at least one mutant
per 40 lines of code (non-blank, non-comment, non-docstring lines), so a new
module cannot arrive without them, and each mutant's snippet occurs exactly
once in its file and the mutated file still compiles (``--check``).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "src" / "optax_rmsprop"


def _load_runner():
  spec = importlib.util.spec_from_file_location(
    "_mutate_runner", ROOT / "tools" / "mutate.py"
  )
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look the module up
  spec.loader.exec_module(module)
  return module


def modules() -> dict:
  return _load_runner().modules()


def required(loc: int) -> int:
  return _load_runner().required(loc)


def snippet_problems(runner) -> list:
  problems = []
  for mutant in runner.MUTANTS:
    path = PKG / mutant.file
    if not path.exists():
      problems.append(f"{mutant.name}: no file {mutant.file}")
      continue
    source = path.read_text()
    count = source.count(mutant.old)
    if count != 1:
      problems.append(f"{mutant.name}: snippet found {count} times")
      continue
    mutated = source.replace(mutant.old, mutant.new)
    if mutated == source:
      problems.append(f"{mutant.name}: the mutation changes nothing")
      continue
    try:
      compile(mutated, mutant.file, "exec")
    except SyntaxError as error:
      problems.append(f"{mutant.name}: does not compile ({error})")
  return problems


def test_every_module_with_code_has_one_mutant_per_40_lines():
  runner = _load_runner()
  counts = {}
  for mutant in runner.MUTANTS:
    counts[mutant.file] = counts.get(mutant.file, 0) + 1
  short = {
    name: (loc, counts.get(name, 0), required(loc))
    for name, loc in modules().items()
    if counts.get(name, 0) < required(loc)
  }
  assert not short, (
    "modules with too few mutants in tools/mutate.py"
    " (lines of code, mutants, required): " + repr(short)
  )


def test_every_mutant_names_an_existing_module():
  runner = _load_runner()
  known = set(modules())
  assert not {m.file for m in runner.MUTANTS} - known


def test_every_mutant_applies_exactly_once_and_compiles():
  assert not snippet_problems(_load_runner())


def test_mutant_names_are_unique_and_tests_exist():
  runner = _load_runner()
  names = [m.name for m in runner.MUTANTS]
  assert len(names) == len(set(names))
  missing = {
    t
    for m in runner.MUTANTS
    for t in m.tests
    if not (ROOT / t.split("::")[0]).exists()
  }
  assert not missing, missing


def test_lines_of_code_skip_comments_blank_lines_and_docstrings():
  source = (
    '"""Doc.\n\nMore."""\n\n# c\ndef f():\n  """D."""\n'
    "  return (1 +\n    2)  # x\n"
  )
  assert _load_runner().lines_of_code(source) == 3


if __name__ == "__main__":
  runner = _load_runner()
  counts = {}
  for mutant in runner.MUTANTS:
    counts[mutant.file] = counts.get(mutant.file, 0) + 1
  for name, loc in modules().items():
    need = required(loc)
    flag = "" if counts.get(name, 0) >= need else "  <-- short"
    print(f"{name:40} {loc:5} {counts.get(name, 0):4} / {need}{flag}")
  print("\n".join(snippet_problems(runner)))
