"""A small mutation runner: plausible bugs in src/, each against a test subset.

Each mutant replaces one snippet of one source file by a bug a real change
could introduce (swapped EMA weights, ε in the wrong place, a wrong
bias-correction exponent, lr and momentum swapped, a dropped mask, clamp or
saturating cast, a wrong preset default or dtype rule, lost None handling,
...). The runner copies the repository to a temporary directory (never
touching this checkout), checks that the tests pass there unmutated, then
for each mutant applies it, runs its targeted tests (``pytest -x``: the
first failure kills it) and restores the file. A mutant the tests do not
kill survives; one that cannot change behaviour is marked equivalent, with
the reason, and left out of the score.

  python tools/mutate.py                 # every mutant; writes the report
  python tools/mutate.py --only NAME ... # rerun some; update their rows
  python tools/mutate.py --check         # every snippet applies (no tests)

The report (``tools/mutation_report.md``) gives the score per module (lines
of code, mutants, killed, equivalent, survived), each run's date and wall
time, and each mutant's result and the test that killed it.

Every module under src/optax_rmsprop with code has at least one mutant per
40 lines of code (non-blank, non-comment, non-docstring: ``lines_of_code``);
``tests/test_mutation_coverage.py`` checks that in CI, with ``--check``'s
rule that each snippet applies exactly once, in seconds. A mutant's tests
are the feature's own test file (or ``file::test``), kept small: its
survival costs their full run.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPORT = ROOT / "tools" / "mutation_report.md"
PKG = "src/optax_rmsprop/"
TIMEOUT_S = 900

# Test subsets, by what a mutant can break.
# Tests first written for mutants that survived the rest of the suite, each
# in its feature's file, named after the behaviour it protects.
PINNED = [
  "tests/test_contract.py::test_coupled_weight_decay_leaves_masked_out_params_alone",
  "tests/test_contract.py::test_decoupled_weight_decay_leaves_masked_out_params_alone",
  "tests/test_numerics.py::test_low_precision_momentum_buffer_saturates_at_the_largest_finite_value",
  "tests/test_numerics.py::test_complex_params_keep_complex_mu_and_momentum_under_real_state_dtypes",
  "tests/test_numerics.py::test_low_precision_mu_saturates_and_decays_back",
  "tests/test_numerics.py::test_float16_moments_are_computed_in_float32_not_float16",
  "tests/test_validation.py::test_complex_gradient_for_a_real_param_is_rejected",
  "tests/test_validation.py::test_infinite_hyperparameters_are_rejected_by_the_finiteness_check",
  "tests/test_presets_keras.py::test_keras_preset_defaults_equal_keras_rmsprop_signature_defaults",
  "tests/test_presets_keras.py::test_keras_default_epsilon_matters_for_tiny_gradients",
  "tests/test_presets_torch.py::test_torch_default_eps_matters_for_tiny_gradients",
  "tests/test_presets_tf1.py::test_tf1_preset_defaults_equal_tf1_signature_defaults",
  "tests/test_presets_tf1.py::test_tf1_default_epsilon_matters_once_nu_has_decayed",
  "tests/test_dropin_inputs.py::test_centered_none_gradient_keeps_its_mu_as_it_was",
  "tests/test_presets_torch_schedules.py::test_onecycle_rejects_nan_momentum_bounds",
]
EQUALITY = ["tests/test_optax_equality.py"]
REFERENCE = ["tests/test_reference.py"]
PROPERTIES = [
  "tests/test_properties_at_scale.py::test_random_cases_match_float64_reference"
]
NUMERICS = ["tests/test_numerics.py"]
CONTRACT = ["tests/test_contract.py"]
NONFINITE = ["tests/test_nonfinite.py"]
# This package's own arithmetic (float32 leaves run optax's program unless
# safe_numerics=True; bfloat16/float16 leaves always run ours), against
# optax's program on ordinary values, every configuration.
OWN = [
  "tests/test_numerics.py::"
  "test_own_arithmetic_matches_optax_program_on_ordinary_gradients",
  "tests/test_numerics.py::"
  "test_low_precision_momentum_is_optax_trace_computed_in_float32",
]
# Fastest first: with -x, the first failure ends the run.
CORE = OWN + PROPERTIES + EQUALITY + REFERENCE + PINNED
FUZZ = ["tests/test_fuzz_inputs.py::test_every_case_works_or_names_its_input"]
INSPECT = ["tests/test_inspect.py"]
TORCH_STATE_DICT = ["tests/test_presets_torch_state_dict.py"]
KERAS_VARIABLES = ["tests/test_keras_variables.py"]


def preset(name):
  return [f"tests/test_presets_{name}.py"] + PINNED


@dataclasses.dataclass
class Mutant:
  name: str
  file: str  # under src/optax_rmsprop/
  old: str  # must occur exactly once
  new: str
  tests: list
  what: str
  equivalent: str = ""  # why it cannot change behaviour, if so


M = Mutant
MUTANTS = [
  # -- scale_by_rms: the moments -----------------------------------------------
  M(
    "nu_ema_weights_swapped",
    "_core/scale_by_rms.py",
    "nu_c = stored_nu = (1 - decay) * g2 + decay * nu_old",
    "nu_c = stored_nu = decay * g2 + (1 - decay) * nu_old",
    CORE,
    "ν = ρ g² + (1 - ρ) ν",
  ),
  M(
    "narrow_nu_ema_weights_swapped",
    "_core/scale_by_rms.py",
    "new_nu = (1 - decay) * g2 + decay * _numerics.cast(nu, rdtype)",
    "new_nu = decay * g2 + (1 - decay) * _numerics.cast(nu, rdtype)",
    NUMERICS + CORE,
    "ν = ρ g² + (1 - ρ) ν where ν is stored narrower (bfloat16 nu_dtype)",
  ),
  M(
    "mu_ema_weights_swapped",
    "_core/scale_by_rms.py",
    "new_mu = (1 - decay) * g_c + decay * mu_old",
    "new_mu = decay * g_c + (1 - decay) * mu_old",
    CORE,
    "μ = ρ g + (1 - ρ) μ",
  ),
  M(
    "nu_of_abs_not_square",
    "_core/scale_by_rms.py",
    "g2 = _numerics.abs_sq(g_c)",
    "g2 = jnp.abs(g_c)",
    CORE,
    "ν averages |g| instead of |g|²",
  ),
  M(
    "nu_clamp_dropped",
    "_core/scale_by_rms.py",
    "_finite(new_nu, nu.dtype), nu.dtype, in_range=True",
    "new_nu, nu.dtype, in_range=True",
    NUMERICS + PINNED,
    "a narrower ν (bfloat16) overflows to inf instead of saturating",
  ),
  M(
    "old_nu_overflow_clamp_dropped",
    "_core/scale_by_rms.py",
    "nu_old = _numerics.clamp_above(nu, float(jnp.finfo(rdtype).max))",
    "nu_old = nu",
    NUMERICS + NONFINITE + PINNED,
    "ν = inf after an overflowing |g|² stays inf (the element never moves"
    " again) instead of restarting from the largest float",
  ),
  M(
    "centered_overflow_mu_not_zeroed",
    "_core/scale_by_rms.py",
    "mu_hat = jnp.where(jnp.abs(mu_hat) > sqrt_max, 0, mu_hat)",
    "mu_hat = mu_hat",
    NUMERICS + NONFINITE + PINNED,
    "centered, |g|² overflowed: ν - μ² = inf - inf = NaN, not a 0 update",
  ),
  M(
    "centered_old_mu_not_clamped",
    "_core/scale_by_rms.py",
    "mu_old = _clamp_magnitude(_numerics.cast(mu, cdtype), _sqrt_max(rdtype))",
    "mu_old = _numerics.cast(mu, cdtype)",
    NUMERICS + PINNED,
    "after ν restarts from the largest float, |μ|² > ν: steps of lr·g/√ε",
  ),
  M(
    "mu_saturating_cast_dropped",
    "_core/scale_by_rms.py",
    "cast = _numerics.cast if in_range else _numerics.saturating_cast",
    "cast = _numerics.cast",
    NUMERICS + PINNED,
    "μ stored without saturation",
  ),
  M(
    "update_from_unrounded_state",
    "_core/scale_by_rms.py",
    "  mu_c, stored_mu = _as_stored(new_mu, mu.dtype)\n"
    "  return nu_c, mu_c, stored_nu, stored_mu",
    "  mu_c, stored_mu = _as_stored(new_mu, mu.dtype)\n"
    "  return nu_c, new_mu, stored_nu, stored_mu",
    NUMERICS + PINNED,
    "the update uses μ before rounding to nu_dtype",
  ),
  M(
    "initial_scale_ignored",
    "_core/scale_by_rms.py",
    "            else initial_scale,\n",
    "            else 0.0,\n",
    CORE,
    "ν₀ = 0 whatever initial_scale says",
  ),
  M(
    "nu_stored_complex",
    "_core/scale_by_rms.py",
    "_numerics.storage_dtype(p, nu_dtype, real=True)",
    "_numerics.storage_dtype(p, nu_dtype)",
    NUMERICS + PINNED,
    "ν of a complex param stored complex",
  ),
  M(
    "none_gradient_drops_state",
    "_core/scale_by_rms.py",
    "new_nu = parts.merge(state.nu, {k: s.nu for k, (_, s) in"
    " results.items()})",
    "new_nu = parts.merge(\n"
    "        jax.tree.map(lambda _: None, state.nu),\n"
    "        {k: s.nu for k, (_, s) in results.items()},\n"
    "    )",
    CONTRACT + ["tests/test_dropin_inputs.py"],
    "a None gradient's ν lost",
  ),
  M(
    "none_gradient_drops_mu",
    "_core/scale_by_rms.py",
    "new_mu = parts.merge(state.mu, {k: s.mu for k, (_, s) in"
    " results.items()})",
    "new_mu = parts.merge(\n"
    "          jax.tree.map(lambda _: None, state.mu),\n"
    "          {k: s.mu for k, (_, s) in results.items()},\n"
    "      )",
    CONTRACT + ["tests/test_dropin_inputs.py"] + PINNED,
    "centered: a None gradient's μ lost",
  ),
  # -- scale_by_rms: the scaling -----------------------------------------------
  M(
    "eps_placement_swapped",
    "_core/scale_by_rms.py",
    "denominator = (var if eps_in_sqrt else jnp.sqrt(var)) + eps",
    "denominator = (jnp.sqrt(var) if eps_in_sqrt else var) + eps",
    CORE,
    "ε added outside the root where it belongs inside, and back",
  ),
  M(
    "eps_dropped",
    "_core/scale_by_rms.py",
    "denominator = (var if eps_in_sqrt else jnp.sqrt(var)) + eps",
    "denominator = (var if eps_in_sqrt else jnp.sqrt(var))",
    CORE,
    "no ε",
  ),
  M(
    "centered_variance_sign",
    "_core/scale_by_rms.py",
    "var = jnp.maximum(nu_hat - _numerics.abs_sq(mu_hat), 0)",
    "var = jnp.maximum(nu_hat + _numerics.abs_sq(mu_hat), 0)",
    CORE,
    "ν + μ² instead of ν - μ²",
  ),
  M(
    "centered_clamp_dropped",
    "_core/scale_by_rms.py",
    "var = jnp.maximum(nu_hat - _numerics.abs_sq(mu_hat), 0)",
    "var = nu_hat - _numerics.abs_sq(mu_hat)",
    NUMERICS + CORE,
    "ν - μ² not clamped at 0",
  ),
  M(
    "denominator_floor_dropped",
    "_core/scale_by_rms.py",
    "if not _validation.known_at_least(eps, tiny):",
    "if False:",
    NUMERICS + PINNED,
    "no floor for a zero or traced ε",
  ),
  M(
    "rsqrt_branch_inverted",
    "_core/scale_by_rms.py",
    "  if eps_in_sqrt:\n    scaling = jax.lax.rsqrt(denominator)",
    "  if not eps_in_sqrt:\n    scaling = jax.lax.rsqrt(denominator)",
    CORE,
    "rsqrt where 1/x belongs",
  ),
  # -- bias correction ---------------------------------------------------------
  M(
    "bias_correction_exponent_plus_one",
    "_core/scale_by_rms.py",
    "nu_hat = optax.tree.bias_correction(nu_hat, decay, count)",
    "nu_hat = optax.tree.bias_correction(nu_hat, decay, count + 1)",
    CORE,
    "ν̂ = ν / (1 - ρ^(t+1))",
  ),
  M(
    "bias_correction_mu_dropped",
    "_core/scale_by_rms.py",
    "        mu_hat = optax.tree.bias_correction(mu_hat, decay, count)",
    "        pass",
    CORE,
    "μ not bias-corrected",
  ),
  M(
    "bias_correction_count_not_incremented",
    "_core/scale_by_rms.py",
    "count = optax.safe_increment(state.count)",
    "count = state.count + 0 * optax.safe_increment(state.count)",
    CORE,
    "t stays 0",
  ),
  # -- numerics ----------------------------------------------------------------
  M(
    "no_float32_promotion",
    "_rules/numerics.py",
    "return jnp.promote_types(dtype, jnp.float32)",
    "return jnp.dtype(dtype)",
    NUMERICS + PINNED,
    "float16 computed in float16",
  ),
  M(
    "saturating_cast_not_saturating",
    "_rules/numerics.py",
    "  if big >= jnp.finfo(x.dtype).max:\n    return cast(x, dtype)",
    "  if True:\n    return cast(x, dtype)",
    NUMERICS + PINNED,
    "narrowing casts overflow to inf",
  ),
  M(
    "complex_moment_dtype_made_real",
    "_rules/numerics.py",
    "    return jnp.promote_types(dtype, jnp.complex64)",
    "    return dtype",
    NUMERICS + PINNED,
    "complex param with explicit nu_dtype/momentum_dtype: real μ/buffer",
  ),
  M(
    "abs_sq_drops_imaginary",
    "_rules/numerics.py",
    "return jnp.real(x) ** 2 + jnp.imag(x) ** 2",
    "return jnp.real(x) ** 2",
    NUMERICS + PINNED,
    "|g|² of complex g without Im²",
  ),
  M(
    "smallest_normal_zero",
    "_rules/numerics.py",
    "return float(jnp.finfo(real_dtype(dtype)).tiny)",
    "return 0.0",
    NUMERICS + PINNED,
    "the denominator floor is 0",
  ),
  M(
    "saturation_keeps_inf_dropped",
    "_rules/numerics.py",
    "return jax.lax.select(jax.lax.is_finite(x), clipped, x)",
    "return clipped",
    NONFINITE + PINNED,
    "an inf gradient saturates to a finite update",
  ),
  # -- momentum and the chain --------------------------------------------------
  M(
    "momentum_weights_swapped",
    "_core/transforms.py",
    "u_c + beta * _numerics.cast(m, cdtype), m.dtype",
    "beta * u_c + _numerics.cast(m, cdtype), m.dtype",
    CORE,
    "m = β u + m",
  ),
  M(
    "nesterov_ignored",
    "_core/transforms.py",
    "      new_u = u_c + beta * new_u",
    "      new_u = new_u",
    CORE,
    "nesterov gives heavy-ball",
  ),
  M(
    "momentum_saturating_cast_dropped",
    "_core/transforms.py",
    "    stored = _numerics.saturating_cast(\n"
    "        u_c + beta * _numerics.cast(m, cdtype), m.dtype",
    "    stored = _numerics.cast(\n"
    "        u_c + beta * _numerics.cast(m, cdtype), m.dtype",
    NUMERICS + PINNED,
    "float16 buffer overflows to inf",
  ),
  M(
    "momentum_none_drops_buffer",
    "_core/transforms.py",
    "lambda u, m: (None, m) if u is None else leaf(u, m)",
    "lambda u, m: (None, None) if u is None else leaf(u, m)",
    CONTRACT + ["tests/test_dropin_inputs.py"],
    "a None gradient's buffer lost (in the own program)",
    equivalent="a None gradient belongs to no program group, so"
    " Partition.merge keeps its buffer from the old state (state.trace is"
    " merge's base) whatever own_update returns for it; the merge's base is"
    " mutated by momentum_none_drops_buffer_in_merge",
  ),
  M(
    "momentum_none_drops_buffer_in_merge",
    "_core/transforms.py",
    "    new_trace = parts.merge(\n        state.trace,",
    "    new_trace = parts.merge(\n"
    "        jax.tree.map(lambda _: None, state.trace),",
    CONTRACT + ["tests/test_dropin_inputs.py"],
    "a None gradient's momentum buffer lost (set to None)",
  ),
  M(
    "decoupled_decay_sign",
    "_core/transforms.py",
    "_trees.map_leaves(lambda u, p: weight_decay * p, updates, params)",
    "_trees.map_leaves(lambda u, p: -weight_decay * p, updates, params)",
    CORE + CONTRACT,
    "decoupled decay grows the weights",
  ),
  M(
    "coupled_decay_mask_dropped",
    "_core/transforms.py",
    "tx = masked(optax.add_decayed_weights(weight_decay), mask, mask_name)",
    "tx = optax.add_decayed_weights(weight_decay)",
    PINNED + CONTRACT,
    "weight_decay_mask ignored by the coupled decay",
  ),
  M(
    "decoupled_decay_mask_dropped",
    "_core/transforms.py",
    '  return masked(tx, mask, "mask")',
    "  return tx",
    CONTRACT + PINNED,
    "add_decoupled_weight_decay's mask ignored",
  ),
  M(
    "lr_and_momentum_order_swapped",
    "_core/rmsprop.py",
    "steps.extend([lr_step, buffer] if lr_in_momentum else [buffer, lr_step])",
    "steps.extend([buffer, lr_step] if lr_in_momentum else [lr_step, buffer])",
    CORE + ["tests/test_presets_torch_schedules.py"],
    "lr inside the buffer where it belongs outside",
  ),
  M(
    "maximize_ignored",
    "_core/rmsprop.py",
    "  if maximize:\n    steps.append(optax.scale(-1.0))",
    "  if False:\n    steps.append(optax.scale(-1.0))",
    CORE,
    "maximize descends",
  ),
  M(
    "rmsprop_mask_dropped_for_decoupled",
    "_core/rmsprop.py",
    '            weight_decay_mask,\n            "weight_decay_mask",',
    '            None,\n            "weight_decay_mask",',
    CONTRACT + PINNED,
    "weight_decay_mask ignored by the decoupled decay",
  ),
  # -- presets: defaults and conventions ---------------------------------------
  M(
    "keras_default_epsilon",
    "_ports/keras/preset.py",
    "epsilon: jax.typing.ArrayLike = 1e-07,",
    "epsilon: jax.typing.ArrayLike = 1e-08,",
    preset("keras"),
    "Keras' default ε 1e-7 -> 1e-8",
  ),
  M(
    "keras_default_rho",
    "_ports/keras/preset.py",
    "rho: jax.typing.ArrayLike = 0.9,",
    "rho: jax.typing.ArrayLike = 0.95,",
    preset("keras"),
    "Keras' default ρ",
  ),
  M(
    "keras_lr_outside_momentum",
    "_ports/keras/preset.py",
    "        lr_in_momentum=True,\n       "
    " decoupled_weight_decay=weight_decay,",
    "        lr_in_momentum=False,\n       "
    " decoupled_weight_decay=weight_decay,",
    preset("keras"),
    "Keras with PyTorch's momentum placement",
  ),
  M(
    "keras_decay_coupled",
    "_ports/keras/preset.py",
    "      decoupled_weight_decay=weight_decay,\n",
    "      coupled_weight_decay=weight_decay,\n",
    preset("keras"),
    "Keras' decoupled decay made L2",
  ),
  M(
    "torch_default_alpha",
    "_ports/torch/preset.py",
    "alpha: jax.typing.ArrayLike = 0.99,",
    "alpha: jax.typing.ArrayLike = 0.9,",
    preset("torch"),
    "PyTorch's default α",
  ),
  M(
    "torch_default_eps",
    "_ports/torch/preset.py",
    "eps: jax.typing.ArrayLike = 1e-08,",
    "eps: jax.typing.ArrayLike = 1e-07,",
    preset("torch"),
    "PyTorch's default ε",
  ),
  M(
    "torch_eps_inside_root",
    "_ports/torch/preset.py",
    "    eps_in_sqrt=False,",
    "    eps_in_sqrt=True,",
    preset("torch"),
    "PyTorch's ε inside the root",
  ),
  M(
    "torch_lr_inside_momentum",
    "_ports/torch/preset.py",
    "    lr_in_momentum=False,",
    "    lr_in_momentum=True,",
    preset("torch") + ["tests/test_presets_torch_schedules.py"],
    "PyTorch with optax's momentum placement",
  ),
  M(
    "tf1_initial_scale_zero",
    "_ports/tf1.py",
    "      initial_scale=1.0,",
    "      initial_scale=0.0,",
    preset("tf1"),
    "TF1's ν₀ = 1 -> 0",
  ),
  M(
    "tf1_default_epsilon",
    "_ports/tf1.py",
    "epsilon: jax.typing.ArrayLike = 1e-10,",
    "epsilon: jax.typing.ArrayLike = 1e-07,",
    preset("tf1"),
    "TF1's default ε",
  ),
  M(
    "timm_initial_scale_zero",
    "_ports/timm.py",
    "        initial_scale=1.0,\n        eps_in_sqrt=True,\n",
    "        initial_scale=0.0,\n        eps_in_sqrt=True,\n",
    preset("timm"),
    "timm's ν₀ = 1 -> 0 (chain with caution/decay)",
  ),
  M(
    "timm_default_alpha",
    "_ports/timm.py",
    "alpha: jax.typing.ArrayLike = 0.9,",
    "alpha: jax.typing.ArrayLike = 0.99,",
    preset("timm"),
    "timm's default α",
  ),
  M(
    "dqn_not_centered",
    "_ports/dqn.py",
    "      centered=True,",
    "      centered=False,",
    preset("dqn"),
    "DQN's RMSprop uncentered",
  ),
  M(
    "dqn_default_decay",
    "_ports/dqn.py",
    "decay: jax.typing.ArrayLike = 0.95,",
    "decay: jax.typing.ArrayLike = 0.9,",
    preset("dqn"),
    "DQN's ρ = 0.95 -> 0.9",
  ),
  # -- wrappers ----------------------------------------------------------------
  M(
    "lazy_rows_all_instead_of_any",
    "_tools/lazy_rows.py",
    "return jnp.any(g != 0, axis=tuple(range(axis + 1, jnp.ndim(g))))",
    "return jnp.all(g != 0, axis=tuple(range(axis + 1, jnp.ndim(g))))",
    ["tests/test_lazy_rows.py"],
    "a row is active only if all nonzero",
  ),
  M(
    "caution_direction_flipped",
    "_tools/caution.py",
    "mask = (jnp.real(product) < 0).astype(u.dtype)",
    "mask = (jnp.real(product) > 0).astype(u.dtype)",
    ["tests/test_caution.py"],
    "cautious keeps the uphill coordinates",
  ),
  M(
    "caution_not_rescaled",
    "_tools/caution.py",
    "return u * (mask / scale)",
    "return u * mask",
    ["tests/test_caution.py"],
    "the mask's mean not divided out",
  ),
  M(
    "stacked_wrong_row",
    "_tools/stacked.py",
    "new_leaves[i] = stacked[j].astype(leaves[i].dtype)",
    "new_leaves[i] = stacked[0].astype(leaves[i].dtype)",
    ["tests/test_stacked.py"],
    "every leaf gets its group's first row",
  ),
  M(
    "stacked_groups_ignore_dtype",
    "_tools/stacked.py",
    "key: Any = (shape, np.dtype(jnp.result_type(leaf)), shardings[i])",
    "key: Any = (shape, shardings[i])",
    ["tests/test_stacked.py"] + PINNED,
    "same-shape leaves of different dtypes stacked together (promoted)",
  ),
  M(
    "stacked_frozen_rows_not_kept",
    "_tools/stacked.py",
    "if any(map(any, frozen)):",
    "if False:",
    ["tests/test_stacked.py"] + PINNED,
    "a None gradient's rows of a stacked state decay as if it were 0",
  ),
  M(
    "keras_ema_weights_swapped",
    "_ports/keras/transforms.py",
    "return _like(alpha * e + (1 - alpha) * new_p, e)",
    "return _like((1 - alpha) * e + alpha * new_p, e)",
    preset("keras"),
    "the parameter EMA's weights swapped",
  ),
  M(
    "keras_clipnorm_min",
    "_ports/keras/transforms.py",
    "return _like((g * max_norm) / jnp.maximum(l2norm, max_norm), g)",
    "return _like((g * max_norm) / jnp.minimum(l2norm, max_norm), g)",
    preset("keras"),
    "clipnorm scales up small gradients",
  ),
  # -- validation --------------------------------------------------------------
  M(
    "nan_hyperparameter_accepted",
    "_rules/validation.py",
    "  ok = ~np.isnan(array)",
    "  ok = np.ones_like(array, bool)",
    ["tests/test_validation.py"] + PINNED + FUZZ,
    "NaN passes the range checks",
  ),
  M(
    "inf_hyperparameter_accepted",
    "_rules/validation.py",
    "  if np.isinf(array):",
    "  if False:",
    ["tests/test_validation.py"] + PINNED + FUZZ,
    "±inf passes the checks",
  ),
  M(
    "bool_flag_check_dropped",
    "_rules/validation.py",
    "  if isinstance(value, (bool, np.bool_)):\n    return\n  if isinstance("
    "value, jax.core.Tracer):",
    "  if True:\n    return\n  if isinstance(value, jax.core.Tracer):",
    ["tests/test_validation.py"] + PINNED + FUZZ,
    "any switch value accepted",
  ),
  M(
    "decay_upper_bound_two",
    "_core/scale_by_rms.py",
    '_validation.check_interval("decay", decay, 0.0, 1.0)',
    '_validation.check_interval("decay", decay, 0.0, 2.0)',
    ["tests/test_validation.py", "tests/test_presets_validation.py"] + FUZZ,
    "decay up to 2 accepted",
  ),
  M(
    "none_number_accepted",
    "_rules/validation.py",
    "    if optional:\n      return None\n",
    "    if True:\n      return None\n",
    ["tests/test_validation.py"] + PINNED + FUZZ,
    "None accepted for a number",
  ),
  # -- programs: which leaves run optax's own program --------------------------
  M(
    "programs_state_dtype_ignored",
    "_core/programs.py",
    "  if any(s is not None and jnp.dtype(s.dtype) != dtype for s in state):\n"
    "    return None\n",
    "",
    NUMERICS,
    "a float32 gradient with bfloat16 state (nu_dtype) runs optax's program,"
    " which promotes the state to float32",
  ),
  M(
    "programs_subtree_inverted",
    "_core/programs.py",
    "[x if i in keep else None for i, x in enumerate(leaves)]",
    "[x if i not in keep else None for i, x in enumerate(leaves)]",
    [
      "tests/test_numerics.py::"
      "test_a_tree_mixing_dtypes_updates_each_leaf_as_if_alone"
    ],
    "a mixed-dtype tree: each program gets the other group's leaves",
  ),
  # -- the namespaces: what each public name is --------------------------------
  M(
    "top_level_tf1_is_dqn",
    "__init__.py",
    "from optax_rmsprop._ports.tf1 import tf1_rmsprop as tf1_rmsprop",
    "from optax_rmsprop._ports.dqn import dqn_rmsprop as tf1_rmsprop",
    ["tests/test_presets_tf1.py::test_tf1_preset_defaults_equal_tf1_signature_defaults"],
    "optax_rmsprop.tf1_rmsprop re-exports another preset",
  ),
  M(
    "keras_namespace_from_is_to",
    "keras.py",
    "    from_keras_variables as from_keras_variables,",
    "    to_keras_variables as from_keras_variables,",
    ["tests/test_keras_variables.py::test_variable_paths_match_leaves_by_name_and_round_trip_exactly"],
    "optax_rmsprop.keras.from_keras_variables is the other direction",
  ),
  M(
    "tools_namespace_lazy_rows_is_cautious",
    "tools.py",
    "from optax_rmsprop._tools.lazy_rows import lazy_rows as lazy_rows",
    "from optax_rmsprop._tools.caution import cautious as lazy_rows",
    ["tests/test_lazy_rows.py::test_mask_selects_the_lazy_leaves"],
    "optax_rmsprop.tools.lazy_rows re-exports another wrapper",
  ),
  M(
    "torch_namespace_from_is_to",
    "torch.py",
    "    from_torch_state_dict as from_torch_state_dict,",
    "    to_torch_state_dict as from_torch_state_dict,",
    ["tests/test_presets_torch_state_dict.py::test_a_lost_step_count_is_caught"],
    "optax_rmsprop.torch.from_torch_state_dict is the other direction",
  ),
  # -- Keras transforms: accumulation and EMA ----------------------------------
  M(
    "keras_accumulation_emits_one_late",
    "_ports/keras/transforms.py",
    "emit = state.mini_step == steps - 1",
    "emit = state.mini_step == steps",
    preset("keras"),
    "gradient_accumulation_steps: the step is emitted on mini-step k, not"
    " k - 1 (never, as mini_step < k)",
  ),
  M(
    "keras_accumulator_not_reset",
    "_ports/keras/transforms.py",
    "else jnp.where(emit, jnp.zeros_like(a), s).astype(a.dtype)",
    "else s.astype(a.dtype)",
    preset("keras"),
    "the accumulated gradients are not zeroed after a step",
  ),
  M(
    "keras_ema_first_step_not_copied",
    "_ports/keras/transforms.py",
    "alpha = (iterations != 0).astype(p.dtype) * momentum",
    "alpha = jnp.asarray(momentum, p.dtype)",
    preset("keras"),
    "use_ema: the average starts from 0 instead of the first params",
  ),
  M(
    "keras_ema_overwrite_off_by_one",
    "_ports/keras/transforms.py",
    "overwrite = (iterations + 1) % overwrite_frequency == 0",
    "overwrite = iterations % overwrite_frequency == 0",
    preset("keras"),
    "ema_overwrite_frequency: the params are overwritten one iteration early",
  ),
  # -- switches: init decides which features exist -----------------------------
  M(
    "switches_zero_is_on",
    "_ports/switches.py",
    "  return bool(np.asarray(value).any())",
    "  return True",
    preset("torch") + ["tests/test_presets_validation.py"],
    "momentum=0 / weight_decay=0 still builds a buffer / decay",
  ),
  M(
    "switches_value_for_a_missing_feature_accepted",
    "_ports/switches.py",
    "      if not on and known_on(values[name]):",
    "      if False:",
    ["tests/test_presets_validation.py"],
    "a nonzero momentum for a state initialised with momentum=0 is silently"
    " ignored",
  ),
  # -- timm --------------------------------------------------------------------
  M(
    "timm_coupled_decay_twice_with_caution",
    "_ports/timm.py",
    "inner_coupled = None if use_caution else coupled",
    "inner_coupled = coupled",
    preset("timm"),
    "caution with coupled decay: the decay is added twice (before caution"
    " and inside rmsprop)",
  ),
  # -- torch param groups ------------------------------------------------------
  M(
    "param_groups_defaults_override_the_group",
    "_ports/torch/param_groups.py",
    "torch_rmsprop(**{**defaults, **overrides})",
    "torch_rmsprop(**{**overrides, **defaults})",
    ["tests/test_presets_torch_groups.py"],
    "the shared defaults win over a group's own value (PyTorch: the group's)",
  ),
  M(
    "param_groups_unknown_label_accepted",
    "_ports/torch/param_groups.py",
    "    if unknown:\n      raise ValueError(",
    "    if False:\n      raise ValueError(",
    ["tests/test_presets_torch_groups.py"],
    "a label naming no group is not reported (optax.partition's KeyError)",
  ),
  # -- torch OneCycleLR --------------------------------------------------------
  M(
    "onecycle_first_phase_ends_one_late",
    "_ports/torch/schedules.py",
    "ends = [pct_start * total - 1, total - 1]",
    "ends = [pct_start * total, total - 1]",
    ["tests/test_presets_torch_schedules.py"],
    "the warm-up phase ends at update pT, not pT - 1 (torch's phases hold"
    " their end step)",
  ),
  M(
    "onecycle_three_phase_second_end_off_by_one",
    "_ports/torch/schedules.py",
    "2 * pct_start * total - 2",
    "2 * pct_start * total - 1",
    ["tests/test_presets_torch_schedules.py"],
    "three_phase: the second phase ends at 2pT - 1, not 2pT - 2",
  ),
  M(
    "onecycle_epochs_steps_total_off_by_one",
    "_ports/torch/schedules.py",
    "total = epochs * steps_per_epoch",
    "total = epochs * steps_per_epoch + 1",
    ["tests/test_presets_torch_schedules.py"],
    "epochs × steps_per_epoch converted to one update too many",
  ),
  M(
    "onecycle_final_lr_from_max_lr",
    "_ports/torch/schedules.py",
    "final = initial / final_div_factor",
    "final = max_lr / final_div_factor",
    ["tests/test_presets_torch_schedules.py"],
    "the final lr is max_lr / d_f instead of (max_lr / d) / d_f",
  ),
  # -- optax_compat ------------------------------------------------------------
  M(
    "optax_compat_split_class_is_the_wrapper",
    "_rules/optax_compat.py",
    "    .init(jnp.zeros((), jnp.complex64))\n    .inner_state.trace\n",
    "    .init(jnp.zeros((), jnp.complex64))\n    .inner_state\n",
    ["tests/test_optax_compat.py"],
    "the split real/imaginary class taken one level too high (TraceState)",
  ),
  # -- trees: the tree rules ---------------------------------------------------
  M(
    "trees_integer_leaves_accepted",
    "_rules/trees.py",
    "if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):",
    "if dtype is None:",
    [
      "tests/test_dropin_inputs.py::"
      "test_integer_and_boolean_leaves_are_refused_at_init",
      "tests/test_dropin_inputs.py::test_integer_gradient_is_refused_at_update",
    ],
    "an integer gradient/param leaf is optimized (an integer moving average)",
  ),
  M(
    "trees_prefix_mask_inverted",
    "_rules/trees.py",
    "          lambda _: leaf, subtree, is_leaf=is_none",
    "          lambda _: not leaf, subtree, is_leaf=is_none",
    ["tests/test_lazy_rows.py::test_a_prefix_mask_is_the_full_mask"],
    "a prefix mask's bool is inverted when spread over its subtree",
  ),
  M(
    "trees_non_bool_mask_accepted",
    "_rules/trees.py",
    "    if m is None or isinstance(m, (bool, np.bool_)):\n      continue",
    "    if True:\n      continue",
    [
      "tests/test_validation.py::"
      "test_a_mask_leaf_that_is_not_a_bool_is_rejected"
    ],
    "a mask leaf that is not a bool (a float, a string) is accepted",
  ),
  M(
    "trees_complex_gradient_check_dropped",
    "_rules/trees.py",
    "    if jnp.iscomplexobj(g) and not jnp.iscomplexobj(s):",
    "    if False:",
    ["tests/test_validation.py"],
    "a complex gradient for a real param drops its imaginary part silently",
  ),
  M(
    "trees_shape_mismatch_accepted",
    "_rules/trees.py",
    "    if jnp.shape(g) != jnp.shape(s):",
    "    if False:",
    ["tests/test_validation.py", "tests/test_contract.py"],
    "a gradient of another shape than its state broadcasts silently",
  ),
  # -- lazy_rows ---------------------------------------------------------------
  M(
    "lazy_rows_inactive_rows_get_updates",
    "_tools/lazy_rows.py",
    "lambda u, a: _keep_inactive_rows(u, jnp.zeros_like(u), a),",
    "lambda u, a: u,",
    ["tests/test_lazy_rows.py"],
    "rows without a gradient still get the inner update",
  ),
  M(
    "lazy_rows_keep_rule_inverted",
    "_tools/lazy_rows.py",
    "  return jnp.where(rows, new, old)",
    "  return jnp.where(rows, old, new)",
    ["tests/test_lazy_rows.py"],
    "the state moves on the inactive rows and stays on the active ones",
  ),
  M(
    "lazy_rows_mask_ignored",
    "_tools/lazy_rows.py",
    "    if not lazy or jnp.ndim(g) <= axis:",
    "    if jnp.ndim(g) <= axis:",
    ["tests/test_lazy_rows.py"],
    "leaves the mask leaves dense are lazy too",
  ),
  # -- stacked / sharding ------------------------------------------------------
  M(
    "stacked_row_axis_is_the_stacking_axis",
    "_tools/stacked.py",
    "  return 1 if _STACKED_UPDATE.get() else 0",
    "  return 0",
    ["tests/test_stacked.py::test_lazy_rows_inside_judges_each_params_rows"],
    "inside stack_leaves, lazy_rows takes the stacking axis for the rows",
  ),
  M(
    "stacked_big_leaves_stacked_too",
    "_tools/stacked.py",
    "    if int(np.prod(shape)) > max_leaf_size:\n      key = i",
    "    if False:\n      key = i",
    ["tests/test_stacked.py"],
    "max_leaf_size ignored: large leaves are stacked (a copy per step)",
  ),
  M(
    "stacked_shardings_replicated",
    "_tools/stacked.py",
    "        return per_group[key.idx]",
    "        return replicated",
    ["tests/test_sharding.py::test_stack_leaves_on_a_mesh_respects_shardings"],
    "a stacked group's state is replicated, not sharded like its params",
  ),
  M(
    "sharding_state_replicated",
    "_tools/sharding.py",
    "        lambda _, sharding: sharding,",
    "        lambda _, sharding: replicated,",
    ["tests/test_sharding.py::test_state_shardings_on_one_device_and_abstract_params",
     "tests/test_sharding.py::test_init_sharded_follows_params_on_auto_and_explicit_mesh"],
    "the params-shaped state is replicated instead of following the params",
  ),
  M(
    "sharding_init_without_out_shardings",
    "_tools/sharding.py",
    "return jax.jit(tx.init, out_shardings=shardings)(params)",
    "return jax.jit(tx.init)(params)",
    ["tests/test_sharding.py::test_init_sharded_follows_params_on_auto_and_explicit_mesh"],
    "init_sharded compiles init without the state's shardings",
  ),
  # -- rms_stats (inspect) -----------------------------------------------------
  M(
    "rms_stats_step_size_not_mirrored",
    "_tools/inspect.py",
    'out["step_size"] = lerp(steps, n - 1 - lo, n - 1 - hi)',
    'out["step_size"] = lerp(steps, lo, hi)',
    INSPECT,
    "step-size quantiles read at ν's ranks, not mirrored (the step size"
    " falls as ν grows): p5 reports p95",
  ),
  M(
    "rms_stats_quantile_not_interpolated",
    "_tools/inspect.py",
    "  hi = np.minimum(lo + 1, n - 1)",
    "  hi = lo",
    INSPECT,
    "quantiles take the lower order statistic instead of NumPy's linear"
    " interpolation",
  ),
  M(
    "rms_stats_lerp_from_the_wrong_end",
    "_tools/inspect.py",
    "return jnp.where(w > 0, a + (b - a) * w, a)",
    "return jnp.where(w > 0, b + (a - b) * w, a)",
    INSPECT,
    "interpolation weight applied from the upper order statistic",
  ),
  M(
    "rms_stats_quantile_names_mirrored",
    "_tools/inspect.py",
    'return {0.0: "min", 1.0: "max"}.get(q, f"p{100 * q:g}")',
    'return {0.0: "max", 1.0: "min"}.get(q, f"p{100 * q:g}")',
    INSPECT,
    "quantile 0 reported as max and 1 as min",
  ),
  M(
    "rms_stats_injected_value_over_the_argument",
    "_tools/inspect.py",
    "  if given is not None:\n    return given\n"
    "  for key in _NAMES[name]:\n    if key in found.hyperparams:\n"
    "      return found.hyperparams[key]\n",
    "  for key in _NAMES[name]:\n    if key in found.hyperparams:\n"
    "      return found.hyperparams[key]\n"
    "  if given is not None:\n    return given\n",
    INSPECT,
    "an injected hyperparameter wins over the one passed to rms_stats",
  ),
  M(
    "rms_stats_schedule_at_the_next_count",
    "_tools/inspect.py",
    "lr = lr(jnp.maximum(count - 1, 0))",
    "lr = lr(count)",
    INSPECT,
    "a schedule called with t instead of t - 1 (the latest update's lr)",
  ),
  M(
    "rms_stats_bias_correction_exponent_plus_one",
    "_tools/inspect.py",
    "correction = jnp.where(t > 0, 1 - jnp.asarray(decay, jnp.float32)"
    " ** t, 1.0)",
    "correction = jnp.where(\n"
    "        t > 0, 1 - jnp.asarray(decay, jnp.float32) ** (t + 1), 1.0\n"
    "    )",
    INSPECT,
    "ν̂ = ν / (1 - ρ^(t+1))",
  ),
  M(
    "rms_stats_centered_mu_not_corrected",
    "_tools/inspect.py",
    "  if correction is not None:\n    mu_hat = mu_hat /"
    " correction.astype(dtype)\n",
    "",
    INSPECT,
    "centered with bias correction: μ̂ left uncorrected in v = ν̂ - |μ̂|²",
  ),
  M(
    "rms_stats_eps_placement_inverted",
    "_tools/inspect.py",
    "  if eps_in_sqrt:\n    return lr * jax.lax.rsqrt",
    "  if not eps_in_sqrt:\n    return lr * jax.lax.rsqrt",
    INSPECT,
    "step size with ε inside the root where it is outside, and back",
  ),
  M(
    "rms_stats_saturated_counts_only_inf",
    "_tools/inspect.py",
    "saturated = jnp.sum(nu >= big, dtype=jnp.int32)",
    "saturated = jnp.sum(nu > big, dtype=jnp.int32)",
    INSPECT,
    "nu_saturated counts only inf, not ν clamped at the largest float",
  ),
  # -- torch state_dict converters ---------------------------------------------
  M(
    "torch_state_dict_keys_swapped",
    "_ports/torch/state_dict.py",
    '_KEYS = (("square_avg", "nu"), ("momentum_buffer", "trace"),'
    ' ("grad_avg", "mu"))',
    '_KEYS = (("square_avg", "mu"), ("momentum_buffer", "trace"),'
    ' ("grad_avg", "nu"))',
    TORCH_STATE_DICT,
    "square_avg and grad_avg swapped between ν and μ",
  ),
  M(
    "torch_state_dict_entry_by_leaf_index",
    "_ports/torch/state_dict.py",
    "entry = torch_state.get(torch_id, torch_state.get(str(torch_id), {}))",
    "entry = torch_state.get(k, torch_state.get(str(k), {}))",
    TORCH_STATE_DICT,
    "a leaf's torch state looked up by its leaf index, not its torch id",
  ),
  M(
    "torch_state_dict_complex_parts_swapped",
    "_ports/torch/state_dict.py",
    "_like(value.real, ours.real), _like(value.imag, ours.imaginary)",
    "_like(value.imag, ours.real), _like(value.real, ours.imaginary)",
    TORCH_STATE_DICT,
    "a complex buffer's real and imaginary parts swapped on the way in",
  ),
  M(
    "torch_state_dict_complex_parts_swapped_back",
    "_ports/torch/state_dict.py",
    "value.real, value.imag = real, imag",
    "value.real, value.imag = imag, real",
    TORCH_STATE_DICT,
    "a complex buffer's real and imaginary parts swapped on the way out",
  ),
  M(
    "torch_state_dict_rms_count_not_restored",
    "_ports/torch/state_dict.py",
    "new = new._replace(count=_count_like(count_of(found.path), new.count))",
    "new = new._replace(count=new.count)",
    [
      "tests/test_presets_torch_state_dict.py::"
      "test_a_bias_corrected_states_own_count_is_torchs_step"
    ],
    "from torch: a bias-corrected RMS state's own count left at 0",
  ),
  M(
    "torch_state_dict_count_min_over_leaves",
    "_ports/torch/state_dict.py",
    "return max((steps[k] for k in covered), default=0)",
    "return min((steps[k] for k in covered), default=0)",
    [
      "tests/test_presets_torch_state_dict.py::"
      "test_a_count_over_params_of_different_steps_is_the_largest"
    ],
    "from torch: a scope's count is its least-stepped param's (one added"
    " later), not its most-stepped",
  ),
  M(
    "torch_state_dict_schedule_count_from_its_own_scope",
    "_ports/torch/state_dict.py",
    "count = count_of(_finder.scope_of(found))",
    "count = count_of(found.path)",
    TORCH_STATE_DICT,
    "a scale_by_schedule count restored from its own path (which holds no"
    " buffer: 0) instead of its chain's",
  ),
  M(
    "torch_state_dict_counter_not_restored",
    "_ports/torch/state_dict.py",
    "node = node._replace(count=_count_like(count, node.count))",
    "node = node._replace(count=node.count)",
    TORCH_STATE_DICT,
    "inject_hyperparams'/scale_by_schedule's count left at 0 (schedules"
    " restart)",
  ),
  M(
    "torch_state_dict_wrapped_schedule_counts_not_restored",
    "_ports/torch/state_dict.py",
    "x._replace(count=_count_like(count, x.count))",
    "x",
    TORCH_STATE_DICT,
    "injected schedules' own counts (WrappedSchedule) left at 0",
  ),
  M(
    "torch_state_dict_buffer_mismatch_accepted",
    "_ports/torch/state_dict.py",
    "    ours = field in has[k]\n    if theirs != ours:",
    "    ours = field in has[k]\n    if False:",
    TORCH_STATE_DICT,
    "a momentum/centered mismatch between torch and tx is not reported",
  ),
  M(
    "torch_state_dict_step_one_ahead",
    "_ports/torch/state_dict.py",
    'entry = {"step": torch.tensor(float(count), dtype=scalar)}',
    'entry = {"step": torch.tensor(float(count + 1), dtype=scalar)}',
    TORCH_STATE_DICT,
    "to torch: step written one ahead of the update count",
  ),
  # -- Keras variables converters ----------------------------------------------
  M(
    "keras_variables_mu_from_velocity",
    "_ports/keras/variables.py",
    'fields["mu"] = like(node.mu, keras_state.tree("average_gradient"))',
    'fields["mu"] = like(node.mu, keras_state.tree("velocity"))',
    KERAS_VARIABLES,
    "centered: μ filled from the velocities instead of average_gradient",
  ),
  M(
    "keras_variables_momentum_sign_in",
    "_ports/keras/variables.py",
    'momentum = jax.tree.map(np.negative, keras_state.tree("momentum"))',
    'momentum = keras_state.tree("momentum")',
    KERAS_VARIABLES,
    "Keras' momentum (-lr-scaled) taken as optax's trace without the sign",
  ),
  M(
    "keras_variables_momentum_sign_out",
    "_ports/keras/variables.py",
    'parts["momentum"] = jax.tree.map(jnp.negative, node.trace)',
    'parts["momentum"] = node.trace',
    KERAS_VARIABLES,
    "optax's trace written to Keras' momentum without the sign",
  ),
  M(
    "keras_variables_multisteps_fields_swapped",
    "_ports/keras/variables.py",
    "          mini_step=count_like(node.mini_step, calls % steps),\n"
    "          gradient_step=count_like(node.gradient_step, calls // steps),",
    "          mini_step=count_like(node.mini_step, calls // steps),\n"
    "          gradient_step=count_like(node.gradient_step, calls % steps),",
    KERAS_VARIABLES,
    "gradient accumulation: mini_step and gradient_step swapped",
  ),
  M(
    "keras_variables_inner_count_in_calls",
    "_ports/keras/variables.py",
    "updates_seen = calls if one.multisteps is None else calls // steps",
    "updates_seen = calls",
    KERAS_VARIABLES,
    "inside MultiSteps the counts get the calls, not the updates"
    " (calls // steps)",
  ),
  M(
    "keras_variables_iterations_from_updates",
    "_ports/keras/variables.py",
    "calls = int(multisteps.gradient_step) * steps + int(multisteps.mini_step)",
    "calls = int(multisteps.gradient_step) + int(multisteps.mini_step)",
    [
      "tests/test_state_finder.py::"
      "test_keras_state_under_multisteps_and_inject_round_trips"
    ],
    "gradient accumulation: iterations = updates + mini_step, not"
    " updates × steps + mini_step",
  ),
  M(
    "keras_variables_header_ignores_learning_rate",
    "_ports/keras/variables.py",
    'self.header = 2 if self.names[1:2] == ["learning_rate"] else 1',
    "self.header = 1",
    KERAS_VARIABLES,
    "the learning_rate variable taken for the first velocity",
  ),
  M(
    "keras_variables_blocks_interleaved",
    "_ports/keras/variables.py",
    "return self.header + self.blocks.index(block) * self.count + i",
    "return self.header + i * len(self.blocks) + self.blocks.index(block)",
    KERAS_VARIABLES,
    "the variables read per parameter (interleaved) instead of per block",
  ),
  M(
    "keras_variables_paths_ignored",
    "_ports/keras/variables.py",
    "order.append(layout.keys.index(key))",
    "order.append(len(order))",
    KERAS_VARIABLES,
    "variable_paths ignored: leaves matched to Keras variables by position",
  ),
  # -- state_finder: the one walk over optimizer states ------------------------
  M(
    "state_finder_outer_count_wins",
    "_tools/state_finder.py",
    "    if len(counter.scope) > depth and any(",
    "    if (depth < 0 or len(counter.scope) < depth) and any(",
    ["tests/test_state_finder.py"],
    "a state's count comes from the outermost counter around it (an outer"
    " inject_hyperparams) instead of the innermost",
  ),
  M(
    "state_finder_outer_hyperparams_win",
    "_tools/state_finder.py",
    "hyperparams = {**hyperparams, **node.hyperparams}",
    "hyperparams = {**node.hyperparams, **hyperparams}",
    [
      "tests/test_inspect.py::"
      "test_nested_inject_hyperparams_the_innermost_value_wins"
    ],
    "nested inject_hyperparams: the outer one's value wins over the inner",
  ),
  M(
    "state_finder_schedule_count_scoped_to_itself",
    "_tools/state_finder.py",
    "    return found.path[:-1]\n",
    "    return found.path\n",
    [
      "tests/test_inspect.py::"
      "test_a_scale_by_schedule_count_counts_for_its_chain"
    ],
    "a scale_by_schedule count covers only its own path, not its chain's"
    " states",
  ),
  M(
    "state_finder_outermost_group_label",
    "_tools/state_finder.py",
    "        label = next_key.key",
    "        label = next_key.key if label is None else label",
    [
      "tests/test_inspect.py::"
      "test_nested_partitions_take_the_innermost_groups_learning_rate"
    ],
    "nested partitions: a state's group is the outermost label, not the"
    " innermost",
  ),
  M(
    "state_finder_multisteps_counts_mini_steps",
    "_tools/state_finder.py",
    "return Counter(found.path, state.gradient_step)",
    "return Counter(found.path, state.mini_step)",
    [
      "tests/test_inspect.py::"
      "test_multisteps_counts_its_updates_not_its_mini_steps"
    ],
    "MultiSteps' counter is its mini step, not its update count",
  ),
]


LINES_PER_MUTANT = 40  # at least one mutant per 40 lines of code a module


def lines_of_code(source: str) -> int:
  """Non-blank lines holding code: not comments, not docstrings."""
  docstrings = set()
  for node in ast.walk(ast.parse(source)):
    body = getattr(node, "body", None)
    if isinstance(body, list) and body:
      first = body[0]
      if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
      ):
        docstrings.update(range(first.lineno, first.end_lineno + 1))
  skip = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
  }
  code = set()
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type not in skip:
      code.update(range(tok.start[0], tok.end[0] + 1))
  return len(code - docstrings)


def modules() -> dict:
  """{module under src/optax_rmsprop/: its lines of code}, every module."""
  pkg = ROOT / PKG
  return {
    path.relative_to(pkg).as_posix(): lines_of_code(path.read_text())
    for path in sorted(pkg.rglob("*.py"))
  }


def required(loc: int) -> int:
  """Mutants a module of ``loc`` lines of code needs (0 for no code)."""
  return -(-loc // LINES_PER_MUTANT)


def copy_repo(dest: pathlib.Path) -> None:
  """The working tree's files (tracked and untracked, not ignored)."""
  files = (
    subprocess.run(
      ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
      cwd=ROOT,
      capture_output=True,
      check=True,
    )
    .stdout.decode()
    .split("\0")
  )
  for name in filter(None, files):
    src = ROOT / name
    if src.is_file():
      (dest / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(src, dest / name)


def run_tests(copy: pathlib.Path, tests: list) -> tuple[bool, str]:
  """(passed, the first failing test or a note) for ``tests`` in ``copy``."""
  env = dict(
    os.environ,
    PYTHONPATH=str(copy / "src"),
    JAX_PLATFORMS="cpu",
    KERAS_BACKEND="jax",
  )
  cmd = [
    sys.executable,
    "-m",
    "pytest",
    "-x",
    "-q",
    "-p",
    "no:cacheprovider",
    "--no-header",
    "-n",  # one process: a mutant's subset is small, workers cost more
    "0",
    "-m",
    "not slow",
    *tests,
  ]
  try:
    proc = subprocess.run(
      cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
  except subprocess.TimeoutExpired:
    return False, f"timed out after {TIMEOUT_S} s"
  out = proc.stdout + proc.stderr
  if proc.returncode == 0:
    return True, ""
  failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
  return False, failed[0] if failed else out.strip().splitlines()[-1][:200]


def apply(copy: pathlib.Path, mutant: Mutant) -> str:
  path = copy / PKG / mutant.file
  original = path.read_text()
  count = original.count(mutant.old)
  if count != 1:
    raise ValueError(
      f"{mutant.name}: snippet found {count} times in {mutant.file}"
    )
  path.write_text(original.replace(mutant.old, mutant.new))
  return original


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", nargs="*", default=None)
  parser.add_argument("--check", action="store_true")
  args = parser.parse_args(argv)
  began_all = time.perf_counter()
  unknown = set(args.only or ()) - {m.name for m in MUTANTS}
  assert not unknown, f"no such mutants: {sorted(unknown)}"
  mutants = [m for m in MUTANTS if args.only is None or m.name in args.only]
  assert len({m.name for m in MUTANTS}) == len(MUTANTS), "duplicate names"
  with tempfile.TemporaryDirectory(prefix="optax-rmsprop-mutants-") as tmp:
    copy = pathlib.Path(tmp)
    copy_repo(copy)
    for mutant in mutants:  # every snippet applies, before any test runs
      original = apply(copy, mutant)
      compile((copy / PKG / mutant.file).read_text(), mutant.file, "exec")
      (copy / PKG / mutant.file).write_text(original)
    if args.check:
      print(f"{len(mutants)} mutants apply")
      return 0
    imported = subprocess.run(
      [
        sys.executable,
        "-c",
        "import optax_rmsprop; print(optax_rmsprop.__file__)",
      ],
      cwd=copy,
      capture_output=True,
      text=True,
      env=dict(os.environ, PYTHONPATH=str(copy / "src")),
      check=True,
    ).stdout.strip()
    assert imported.startswith(str(copy)), f"imports {imported}, not the copy"
    # Baseline: every test the mutants use passes unmutated (one run).
    baseline = list(
      dict.fromkeys(t for m in mutants if not m.equivalent for t in m.tests)
    )
    started = time.perf_counter()
    ok, failure = run_tests(copy, baseline)
    if not ok:
      print(f"baseline fails: {failure}")
      return 2
    print(
      f"baseline passes ({time.perf_counter() - started:.0f} s)", flush=True
    )
    rows = []
    for mutant in mutants:
      began = time.perf_counter()
      if mutant.equivalent:
        result, detail = "equivalent", mutant.equivalent
      else:
        original = apply(copy, mutant)
        try:
          survived, detail = run_tests(copy, mutant.tests)
        finally:
          (copy / PKG / mutant.file).write_text(original)
        result = "SURVIVED" if survived else "killed"
      seconds = time.perf_counter() - began
      print(
        f"{result:>10}  {mutant.name}  {detail}  ({seconds:.0f} s)", flush=True
      )
      rows.append((mutant, result, detail))
  minutes = (time.perf_counter() - began_all) / 60
  runs = [
    f"{time.strftime('%Y-%m-%d')}, {minutes:.0f} min on"
    f" {os.cpu_count()} CPU cores"
    + ("" if args.only is None else f" (rerun of {len(mutants)})")
  ]
  if args.only is not None and REPORT.exists():
    previous = REPORT.read_text()
    rows = merge(previous, rows)  # the others as last reported
    runs = re.findall(r"^- (\d{4}-.*)$", previous, re.MULTILINE) + runs
  report = render(rows, runs)
  REPORT.write_text(report)
  print(report.splitlines()[2])
  return 0 if all(r != "SURVIVED" for _, r, _ in rows) else 1


def merge(previous: str, rows) -> list:
  """``rows`` (just run) with every other mutant's last reported result."""
  done = {m.name for m, _, _ in rows}
  last = {}
  for line in previous.splitlines():
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
    if len(cells) == 5 and cells[0].startswith("`"):
      last[cells[0].strip("`")] = (cells[3], cells[4])
  by_name = {m.name: (m, r, d) for m, r, d in rows}
  merged = []
  for mutant in MUTANTS:
    if mutant.name in done:
      merged.append(by_name[mutant.name])
    elif mutant.name in last:
      merged.append((mutant, *last[mutant.name]))
  return merged


def _cell(text: str) -> str:
  """``text`` in a Markdown table cell (pipes escaped, one line)."""
  return text.replace("|", "\\|").replace("\n", " ")


def _module_rows(rows) -> list:
  by_file = {}
  for mutant, result, _ in rows:
    counts = by_file.setdefault(mutant.file, dict.fromkeys(
      ("mutants", "killed", "equivalent", "SURVIVED"), 0))
    counts["mutants"] += 1
    counts[result] = counts.get(result, 0) + 1
  lines = []
  for name, loc in modules().items():
    c = by_file.get(name, dict.fromkeys(
      ("mutants", "killed", "equivalent", "SURVIVED"), 0))
    if not loc and not c["mutants"]:
      continue
    lines.append(
      f"| `{name}` | {loc} | {c['mutants']} | {c['killed']} |"
      f" {c['equivalent']} | {c['SURVIVED']} |"
    )
  return lines


def render(rows, runs) -> str:
  scored = [r for r in rows if r[1] != "equivalent"]
  killed = sum(r[1] == "killed" for r in scored)
  lines = [
    "# Mutation report (`python tools/mutate.py`)",
    "",
    f"Score: {killed}/{len(scored)} non-equivalent mutants killed"
    f" ({len(rows) - len(scored)} equivalent, {len(rows)} in all).",
    "",
    "Runs (date, wall time; each mutant's tests with `-m 'not slow' -x`):",
    "",
    *[f"- {run}" for run in runs],
    "",
    "Before issue #20 (2026-11-29): 66 mutants, 66/66 killed, all in 14"
    " modules (the core, the presets, numerics, validation, caution,"
    " lazy_rows, stack_leaves, the Keras transforms); none in the others.",
    "",
    "Per module (lines of code: non-blank, non-comment, non-docstring;"
    f" at least one mutant per {LINES_PER_MUTANT}):",
    "",
    "| module | LOC | mutants | killed | equivalent | survived |",
    "|---|---|---|---|---|---|",
    *_module_rows(rows),
    "",
    "| mutant | file | bug | result | killed by |",
    "|---|---|---|---|---|",
  ]
  for mutant, result, detail in rows:
    lines.append(
      f"| `{mutant.name}` | `{mutant.file}` | {_cell(mutant.what)} | {result} |"
      f" {_cell(detail)} |"
    )
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  sys.exit(main())
