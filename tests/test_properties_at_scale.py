"""Ten thousand random cases per run against the float64 reference.

A case is a configuration (learning rate, decay, ε, ν₀, momentum, weight
decays, each a traced hyperparameter) with its own gradient sequence (24
steps x 8 elements spanning 1e-6 to 1e6, with zeros, sign flips, constant
runs); ``property_sweep`` runs thousands of them per compiled float32 step
(``inject_hyperparams`` under ``vmap``) and compares each step, and the
free-running trajectory, with ``numpy_reference`` in float64 within the
rounding bound of ``float32_bound``. The table (run with ``-s`` or ``-rA``)
gives, per family, the case count, the mismatches (must be 0), the worst
deviation/bound of a single step and of the trajectory, the worst relative
deviation of well-conditioned steps, the ill-conditioned cases (whose bound
exceeds 1e-4 relative, e.g. centered + bias_correction at step 1 with
ν₀ = 0) and the draws replaced because float32 cannot represent them.

``OPTAX_RMSPROP_PROPERTY_CASES`` sets the number of cases of the default
test; ``-m slow`` runs 1,000,000 cases over all 320 families.
"""

import itertools
import os

import numpy as np
import pytest

import property_sweep as sweep

CI_CASES = int(os.environ.get("OPTAX_RMSPROP_PROPERTY_CASES", 10_240))


def run(families, cases):
  print()
  return sweep.report(families, cases)


def test_ci_families_cover_every_pair_of_switches():
  families = sweep.ci_families()
  assert len(set(families)) == len(families) == 40
  fields = ["centered", "eps_in_sqrt", "bias_correction", "momentum",
            "weight_decay", "maximize"]
  levels = {
      "momentum": list(sweep.MOMENTUM),
      "weight_decay": list(sweep.WEIGHT_DECAY),
  }
  for a, b in itertools.combinations(fields, 2):
    seen = {(getattr(f, a), getattr(f, b)) for f in families}
    want = set(itertools.product(levels.get(a, [False, True]),
                                 levels.get(b, [False, True])))
    assert seen == want, (a, b, want - seen)


def test_random_cases_match_float64_reference():
  results = run(sweep.ci_families(), CI_CASES)
  assert sum(r.cases for r in results) >= min(CI_CASES, 10_000)
  bad = [r.family.name for r in results if r.mismatches]
  assert not bad, f"cases beyond their float32 bound in {bad}"
  # The bound is tight where the problem is well-conditioned, and most
  # cases are: held to within 1e-4 relative at every step of every value.
  total = sum(r.cases for r in results)
  assert sum(r.ill_conditioned for r in results) < 0.5 * total


def test_the_comparison_sees_a_small_change():
  """A reference whose ε or ρ is off by 0.1% is caught in most cases: the
  bound is not so loose that anything passes."""
  rng = np.random.default_rng(1)
  family = sweep.Family(True, False, True, "nesterov_lr_out", "both", True)
  inputs, desired, bound, redrawn = sweep.sample_cases(rng, family, 256)
  run_ = sweep.run_jax([family], [inputs])[0]
  assert sweep.compare(family, inputs, run_, desired, bound, 0).mismatches == 0
  h, p0, grads = inputs
  for key in ("eps", "decay"):
    wrong = dict(h, **{key: h[key] * np.float32(1.001)})
    result = sweep.compare(family, (wrong, p0, grads), run_, desired, bound, 0)
    assert result.mismatches > 0.3 * 256, key


@pytest.mark.slow
def test_a_million_random_cases_match_float64_reference():
  results = run(sweep.all_families(), 1_000_000)
  assert sum(r.cases for r in results) >= 1_000_000
  bad = [r.family.name for r in results if r.mismatches]
  assert not bad, f"cases beyond their float32 bound in {bad}"
