"""Session-wide test policy: doctests that need a framework, and CI's no-skip.

A docstring example that imports an optional framework (torch, keras) is
skipped where that framework is not installed, as in the minimal-versions
environment. Under ``OPTAX_RMSPROP_NO_SKIP=1`` (set by ``.ci/run``) every skip
fails instead, so CI never passes a test it did not run.
"""

import importlib.util
import os
import pathlib
import re

import pytest

_NO_SKIP = os.environ.get("OPTAX_RMSPROP_NO_SKIP") == "1"
_IMPORT = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", re.MULTILINE)


def pytest_collection_modifyitems(items):
  for item in items:
    if not isinstance(item, pytest.DoctestItem):
      continue
    source = "\n".join(example.source for example in item.dtest.examples)
    missing = sorted({name for name in _IMPORT.findall(source)
                      if importlib.util.find_spec(name) is None})
    if missing:
      item.add_marker(pytest.mark.skip(
          reason=f"example needs {', '.join(missing)} (not installed)"))


_OURS = tuple(pathlib.Path(__file__).resolve().parent / d
              for d in ("tests", "src"))


def _fail_skip(node, report):
  # Only this repository's tests: optax's own test files, run from the
  # installed package (a venv may sit inside this checkout, as CI's does),
  # keep their upstream skips.
  path = pathlib.Path(node.path).resolve()
  if not any(path.is_relative_to(ours) for ours in _OURS):
    return
  if _NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else (
        report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped, but OPTAX_RMSPROP_NO_SKIP=1: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  del call
  _fail_skip(item, (yield).get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
  _fail_skip(collector, (yield).get_result())
