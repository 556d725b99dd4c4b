"""Every public function, fuzzed: works or raises an error naming the input.

``fuzz_harness`` holds the cases (wrong hyperparameter types and values,
odd trees, mismatched gradients, state and params, for every name in
``optax_rmsprop.__all__`` that is a function); this runs them all once, and
checks that none fails and that ``docs/fuzzing.md``, the table of what was
tried and what happens, is the one they give now (regenerate it with
``python tests/fuzz_harness.py``).
"""

import inspect

import pytest

import optax_rmsprop
from public_api import public_names
from public_api import resolve

import fuzz_harness


@pytest.fixture(scope="module")
def outcomes():
  return [fuzz_harness.run_case(c) for c in fuzz_harness.all_cases()]


def test_every_case_works_or_names_its_input(outcomes):
  failing = [
      f"{o.case.function}({o.case.argument}={o.case.label}): {o.kind}"
      f" {o.message}"
      for o in outcomes if not o.passed
  ]
  assert not failing, "\n".join(failing)


CONVERTERS = {
    "torch": {"from_torch_state_dict", "to_torch_state_dict"},
    "keras": {"from_keras_variables", "to_keras_variables"},
}


def test_every_public_function_is_fuzzed(outcomes):
  functions = {  # bare names: unique across the namespaces
      name.rpartition(".")[2] for name in public_names()
      if inspect.isfunction(resolve(name))
  }
  for framework, names in CONVERTERS.items():
    if not fuzz_harness.has(framework):  # the minimal-versions environment
      functions -= names
  fuzzed = {o.case.function for o in outcomes}
  assert functions <= fuzzed, functions - fuzzed
  # Both kinds of outcome occur for each: it is tried with bad inputs that
  # it rejects, not only with ones it accepts.
  for name in functions:
    kinds = {o.kind for o in outcomes if o.case.function == name}
    assert kinds & {"ValueError", "TypeError"}, name


def test_the_committed_table_is_current(outcomes):
  missing = [f for f in fuzz_harness.FRAMEWORKS if not fuzz_harness.has(f)]
  if missing:
    pytest.skip(f"the table covers the converters, which need {missing}")
  want = fuzz_harness.stable_lines(fuzz_harness.table(outcomes))
  have = fuzz_harness.stable_lines(fuzz_harness.DOC.read_text())
  assert have == want, (
      "docs/fuzzing.md is stale: run `python tests/fuzz_harness.py`"
  )
