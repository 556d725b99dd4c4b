"""Many random (configuration, gradient sequence) cases per compiled step.

A *family* fixes the switches that change the chain's structure (centered,
eps_in_sqrt, bias_correction, the momentum placement, the weight-decay kind,
maximize); its numeric hyperparameters are traced arrays
(``optax.inject_hyperparams(optax_rmsprop.rmsprop)``) under ``jax.vmap``, so
one compiled float32 step runs thousands of configurations, each with its own
gradient sequence. Every case is compared, at every step, with the float64
NumPy reference fed the same float32 inputs, against the rounding bound of
``float32_bound`` (derived from the conditioning of each operation).

Run it offline for more cases::

  python tests/property_sweep.py --cases 1000000 --all-families
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_rmsprop
from float32_bound import SLACK
from float32_bound import TINY
from float32_bound import Float32Bound
from numpy_reference import Config
from numpy_reference import NumpyRMSprop

STEPS = 24  # updates per case
SIZE = 8  # elements per case (each its own gradient sequence)

# momentum mode -> (nesterov, lr_in_momentum), None: no momentum buffer.
MOMENTUM = {
    "none": None,
    "heavy_ball": (False, True),
    "nesterov": (True, True),
    "heavy_ball_lr_out": (False, False),
    "nesterov_lr_out": (True, False),
}
WEIGHT_DECAY = ("none", "coupled", "decoupled", "both")


@dataclasses.dataclass(frozen=True)
class Family:
  """The compiled (static) part of a configuration."""

  centered: bool
  eps_in_sqrt: bool
  bias_correction: bool
  momentum: str
  weight_decay: str
  maximize: bool

  @property
  def name(self) -> str:
    flags = [
        "centered" if self.centered else "",
        "eps_in_sqrt" if self.eps_in_sqrt else "eps_out",
        "bias_correction" if self.bias_correction else "",
        f"momentum={self.momentum}",
        f"wd={self.weight_decay}",
        "maximize" if self.maximize else "",
    ]
    return ",".join(f for f in flags if f)

  @property
  def coupled(self) -> bool:
    return self.weight_decay in ("coupled", "both")

  @property
  def decoupled(self) -> bool:
    return self.weight_decay in ("decoupled", "both")


def all_families() -> list[Family]:
  """Every combination of the switches: 8 x 5 x 4 x 2 = 320."""
  return [
      Family(c, e, b, m, w, x)
      for c, e, b in itertools.product([False, True], repeat=3)
      for m in MOMENTUM
      for w in WEIGHT_DECAY
      for x in (False, True)
  ]


def ci_families() -> list[Family]:
  """40 families: every (centered, eps_in_sqrt, bias_correction, momentum)
  combination, with the weight-decay kind and maximize chosen so that every
  pair of values of any two switches occurs (checked by the tests)."""
  families = []
  for i, (c, e, b) in enumerate(itertools.product([False, True], repeat=3)):
    for j, m in enumerate(MOMENTUM):
      w = WEIGHT_DECAY[(i + j) % 4]
      families.append(Family(c, e, b, m, w, maximize=(i + j // 2) % 2 == 1))
  return families


def _log_uniform(rng, low, high, n):
  return 10.0 ** rng.uniform(low, high, n)


def sample_hyperparams(rng, family: Family, n: int) -> dict:
  """float32 hyperparameters, wide ranges and exact edge values."""
  h = {
      "lr": _log_uniform(rng, -4, 0, n),
      "decay": 1 - _log_uniform(rng, -3, 0, n),  # [0, 0.999]
      "eps": _log_uniform(rng, -12, 0, n),
      "nu0": np.where(rng.random(n) < 0.5, 0.0, _log_uniform(rng, -4, 1, n)),
  }
  h["lr"][rng.random(n) < 0.03] = 0.0
  h["decay"][rng.random(n) < 0.05] = 0.0
  if not family.bias_correction:  # 1 - ρ^t = 0: no bias correction at ρ = 1
    h["decay"][rng.random(n) < 0.05] = 1.0
  if not family.centered:
    # ε = 0 needs a denominator kept off 0 by ν ≥ ρ^t ν₀ > 0: the chain's
    # floor (smallest normal) would turn 0/0 into 0 where the reference
    # gives NaN. (Centered has no such guarantee: ν - μ² can be 0.)
    zero = rng.random(n) < 0.05
    h["eps"][zero] = 0.0
    h["decay"][zero] = np.maximum(h["decay"][zero], 0.5)
    h["nu0"][zero] = np.maximum(h["nu0"][zero], 1e-3)
  if family.momentum != "none":
    h["beta"] = rng.uniform(0.0, 0.99, n)
    h["beta"][rng.random(n) < 0.05] = 0.0
  if family.coupled:
    h["wc"] = _log_uniform(rng, -4, 0, n)
    h["wc"][rng.random(n) < 0.05] = 0.0
  if family.decoupled:
    h["wd"] = _log_uniform(rng, -4, 0, n)
    h["wd"][rng.random(n) < 0.05] = 0.0
  return {k: v.astype(np.float32) for k, v in h.items()}


def sample_gradients(rng, n: int, steps: int = STEPS, size: int = SIZE):
  """float32 gradients, (n, steps, size): each element's sequence is one of
  Gaussian noise, magnitudes across 12 decades (1e-6 to 1e6) per step, a
  constant run, sign flips, piecewise-constant runs, all zeros, zeros then a
  burst, or a geometric ramp over the 12 decades; some sprinkled with zeros.
  """
  shape = (n, 1, size)
  t = np.arange(steps)[None, :, None]
  base = 10.0 ** rng.uniform(-6, 6, shape)
  sign = rng.choice([-1.0, 1.0], (n, steps, size))
  gauss = rng.standard_normal((n, steps, size)) * base
  wild = sign * 10.0 ** rng.uniform(-6, 6, (n, steps, size))
  new = rng.random((n, steps, size)) < 0.25
  new[:, 0] = True
  start = np.maximum.accumulate(np.where(new, t, 0), axis=1)
  decades = np.linspace(-6, 6, steps)[None, :, None]
  ramp = sign[:, :1] * 10.0 ** np.where(rng.random(shape) < 0.5, decades,
                                        -decades)
  kinds = [
      gauss,
      wild,
      base * sign[:, :1],  # constant
      base * sign[:, :1] * (-1.0) ** t,  # sign flips
      np.take_along_axis(wild, start, axis=1),  # piecewise constant
      np.zeros((n, steps, size)),
      np.where(t >= rng.integers(1, steps, shape), wild, 0.0),  # late burst
      ramp,
  ]
  kind = rng.integers(0, len(kinds), shape)
  g = np.choose(np.broadcast_to(kind, (n, steps, size)), kinds)
  sprinkle = (rng.random(shape) < 0.3) & (rng.random((n, steps, size)) < 0.3)
  return np.where(sprinkle, 0.0, g).astype(np.float32)


def _transform(family: Family, h: dict) -> optax.GradientTransformation:
  kwargs = dict(
      learning_rate=h["lr"],
      decay=h["decay"],
      eps=h["eps"],
      initial_scale=h["nu0"],
      eps_in_sqrt=family.eps_in_sqrt,
      centered=family.centered,
      bias_correction=family.bias_correction,
      maximize=family.maximize,
      # The reference clamps the centered variance at 0: the safe path.
      # (The default is optax's program, where rounding can make it
      # negative: NaN; test_bit_identity.py holds it to optax's bits.)
      safe_numerics=family.centered,
  )
  if MOMENTUM[family.momentum] is not None:
    nesterov, lr_in = MOMENTUM[family.momentum]
    kwargs.update(momentum=h["beta"], nesterov=nesterov, lr_in_momentum=lr_in)
  if family.coupled:
    kwargs["coupled_weight_decay"] = h["wc"]
  if family.decoupled:
    kwargs["decoupled_weight_decay"] = h["wd"]
  return optax.inject_hyperparams(optax_rmsprop.rmsprop)(**kwargs)


def _trajectory(family: Family, h, p0, grads):
  """One case: after each update, the params, the update and the state's
  ν, μ and momentum buffer (zeros where the family has none)."""
  tx = _transform(family, h)

  def body(carry, g):
    p, state = carry
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
    fields = [optax.tree_utils.tree_get(state, k) for k in ("nu", "mu", "trace")]
    fields = [jnp.zeros_like(p) if x is None else x for x in fields]
    return (p, state), (p, updates, *fields)

  return jax.lax.scan(body, (p0, tx.init(p0)), grads)[1]


def run_jax(families: list[Family], cases: list[tuple]) -> list[tuple]:
  """float32 runs of every family's cases, in one compiled program: per
  family, (params, updates, ν, μ, buffer), each (n, steps, size)."""

  @jax.jit
  def run(cases):
    return [
        jax.vmap(functools.partial(_trajectory, f))(*case)
        for f, case in zip(families, cases)
    ]

  return jax.tree.map(np.asarray, run(jax.tree.map(jnp.asarray, cases)))


def reference_config(family: Family, h: dict) -> Config:
  """The reference's Config, each hyperparameter a (n, 1) float64 column."""
  col = lambda k: np.asarray(h[k], np.float64)[:, None]
  config = Config(
      learning_rate=col("lr"),
      decay=col("decay"),
      eps=col("eps"),
      initial_scale=col("nu0"),
      eps_in_sqrt=family.eps_in_sqrt,
      centered=family.centered,
      bias_correction=family.bias_correction,
      maximize=family.maximize,
  )
  if MOMENTUM[family.momentum] is not None:
    config.nesterov, config.lr_in_momentum = MOMENTUM[family.momentum]
    config.momentum = col("beta")
  if family.coupled:
    config.coupled_weight_decay = col("wc")
  if family.decoupled:
    config.decoupled_weight_decay = col("wd")
  return config


# Beyond these, float32 cannot follow the reference: |g̃|² (g̃ = g + λ_c p)
# would overflow, as would the params. A case is in range when the
# reference plus its float32 bound is: where the bound itself leaves the
# range (an ill-conditioned step of ~|g|/ε, then a coupled decay feeding it
# back), a correct float32 run may overflow to inf.
MAX_GRADIENT, MAX_PARAM = 1e18, 1e30


def run_reference(family: Family, h, p0, grads):
  """float64 trajectories and the float32 rounding bound, (n, steps, size),
  and whether each case stays in float32's range."""
  config = reference_config(family, h)
  ref = NumpyRMSprop(config, p0.astype(np.float64))
  bound = Float32Bound(config, p0.shape)
  p = p0.astype(np.float64)
  path, bounds = [], []
  in_range = np.ones(p0.shape[0], bool)
  for t in range(1, grads.shape[1] + 1):
    g = grads[:, t - 1].astype(np.float64)
    if config.coupled_weight_decay is not None:
      g_tilde = np.abs(g) + config.coupled_weight_decay * (np.abs(p) + bound.p)
      in_range &= np.max(g_tilde, axis=1) <= MAX_GRADIENT
    before = (p, ref.nu, ref.mu, ref.m)
    eta = ref.lr()
    p_new = ref.step(p, g)
    bounds.append(
        bound.step(t, g, *before, p_new, ref.nu, ref.mu, ref.m, eta)
    )
    p = p_new
    path.append(p)
    with np.errstate(invalid="ignore"):
      in_range &= np.max(np.abs(p) + bound.p, axis=1) <= MAX_PARAM
  return np.stack(path, 1), np.stack(bounds, 1), in_range


def check_steps(family: Family, h, p0, grads, run):
  """Each float32 step on its own: the reference and the bound start from
  the float32 run's params and state before the step (so no error is
  carried in), and the step's update and new state must be within the bound.

  Returns per case: max deviation/bound, and max relative deviation of the
  update and the state over the well-conditioned steps (bound <= 1e-4 of
  the value), and whether any step was ill-conditioned.
  """
  params, updates, nu, mu, buffer = (x.astype(np.float64) for x in run)
  config = reference_config(family, h)
  p_prev = p0.astype(np.float64)
  ref = NumpyRMSprop(config, p_prev)
  n = p0.shape[0]
  ratio, relative = np.zeros(n), np.zeros(n)
  ill = np.zeros(n, bool)
  for t in range(1, grads.shape[1] + 1):
    if t > 1:
      i = t - 2
      p_prev = params[:, i]
      ref.nu, ref.mu, ref.m = nu[:, i], mu[:, i], buffer[:, i]
    ref.t = t - 1
    bound = Float32Bound(config, p0.shape)
    before = (p_prev, ref.nu, ref.mu, ref.m)
    eta = ref.lr()
    p_new = ref.step(p_prev, grads[:, t - 1].astype(np.float64))
    bound.step(t, grads[:, t - 1].astype(np.float64), *before, p_new,
               ref.nu, ref.mu, ref.m, eta)
    # p_new - p_prev in float64 rounds too (by far less than float32 does).
    u_ref = p_new - p_prev
    f64 = 2.0**-52 * (np.abs(p_prev) + np.abs(p_new))
    pairs = [
        (updates[:, t - 1], u_ref, bound.update, f64),
        (nu[:, t - 1], ref.nu, bound.nu, 0.0),
    ]
    if family.centered:
      pairs.append((mu[:, t - 1], ref.mu, bound.mu, 0.0))
    if family.momentum != "none":
      pairs.append((buffer[:, t - 1], ref.m, bound.m, 0.0))
    for actual, desired, e32, e64 in pairs:
      e = e32 * SLACK + e64
      with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        dev = np.abs(actual - desired)
        dev = np.where(np.isfinite(actual), dev, np.inf)
        r = np.where(dev == 0, 0.0, dev / e)
        # Ill-conditioned: a bound beyond 1e-4 relative (or, for a value
        # of 0, beyond the few smallest normals of underflow).
        well = e <= 1e-4 * np.abs(desired)
        rel = np.where(well, dev / np.abs(desired), 0.0)
      ratio = np.maximum(ratio, np.max(r, axis=1))
      relative = np.maximum(relative, np.max(rel, axis=1))
      ill |= np.any((e32 > 1e-4 * np.abs(desired)) & (e32 > 64 * TINY), axis=1)
  return ratio, relative, ill


def sample_cases(rng, family: Family, n: int):
  """``n`` cases and their reference; a case the reference takes out of
  float32's range (a diverging run with a huge coupled decay, or ρ = 1 and
  a tiny ε) is drawn again, and counted."""
  h = sample_hyperparams(rng, family, n)
  p0 = rng.standard_normal((n, SIZE)).astype(np.float32)
  grads = sample_gradients(rng, n)
  with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
    desired, bound, ok = run_reference(family, h, p0, grads)
  redrawn = 0
  for _ in range(50):
    bad = np.flatnonzero(~ok)
    if not bad.size:
      return (h, p0, grads), desired, bound, redrawn
    redrawn += bad.size
    h2, (p2, g2) = sample_hyperparams(rng, family, bad.size), (
        rng.standard_normal((bad.size, SIZE)).astype(np.float32),
        sample_gradients(rng, bad.size),
    )
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
      d2, b2, ok2 = run_reference(family, h2, p2, g2)
    for k in h:
      h[k][bad] = h2[k]
    p0[bad], grads[bad], desired[bad], bound[bad], ok[bad] = p2, g2, d2, b2, ok2
  raise AssertionError(f"{family.name}: cannot draw cases in float32's range")


@dataclasses.dataclass
class Result:
  """How one family's cases compare with the reference."""

  family: Family
  cases: int
  mismatches: int  # cases beyond their bound, in a step or the trajectory
  step_ratio: float  # worst deviation/bound of a single step (<= 1 passes)
  step_relative: float  # worst relative deviation, well-conditioned steps
  ill_conditioned: int  # cases with a step whose bound is > 1e-4 relative
  path_ratio: float  # worst deviation/bound of the free-running params
  redrawn: int = 0  # draws replaced as out of float32's range

  def row(self) -> str:
    return (
        f"{self.family.name:<66} {self.cases:>8} {self.mismatches:>3}"
        f" {self.step_ratio:9.2e} {self.step_relative:9.2e}"
        f" {self.ill_conditioned:>6} {self.path_ratio:9.2e}"
        f" {self.redrawn:>6}"
    )

  @classmethod
  def merge(cls, parts: list["Result"]) -> "Result":
    return cls(
        family=parts[0].family,
        cases=sum(r.cases for r in parts),
        mismatches=sum(r.mismatches for r in parts),
        step_ratio=max(r.step_ratio for r in parts),
        step_relative=max(r.step_relative for r in parts),
        ill_conditioned=sum(r.ill_conditioned for r in parts),
        path_ratio=max(r.path_ratio for r in parts),
        redrawn=sum(r.redrawn for r in parts),
    )


HEADER = (
    f"{'family':<66} {'cases':>8} {'bad':>3} {'step/bnd':>9}"
    f" {'rel(wc)':>9} {'illcnd':>6} {'path/bnd':>9} {'redraw':>6}"
)


def compare(family: Family, inputs, run, desired, bound, redrawn) -> Result:
  """A family's float32 run against the reference: each step on its own,
  and the free-running params against the accumulated bound."""
  h, p0, grads = inputs
  step_ratio, step_relative, ill = check_steps(family, h, p0, grads, run)
  actual = run[0].astype(np.float64)
  with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
    deviation = np.abs(actual - desired)
    deviation = np.where(np.isfinite(actual), deviation, np.inf)
    path_ratio = np.max(np.where(deviation == 0, 0.0, deviation / bound),
                        axis=(1, 2))
  return Result(
      family=family,
      cases=p0.shape[0],
      mismatches=int(np.sum((step_ratio > 1) | (path_ratio > 1))),
      step_ratio=float(np.max(step_ratio)),
      step_relative=float(np.max(step_relative)),
      ill_conditioned=int(np.sum(ill)),
      path_ratio=float(np.max(path_ratio)),
      redrawn=redrawn,
  )


def sweep(families, cases_per_family, seed=0, group=8, chunk=25_000):
  """Runs every family's cases; yields a Result per family."""
  rng = np.random.default_rng(seed)
  for start in range(0, len(families), group):
    batch = families[start : start + group]
    results = {f: [] for f in batch}
    for done in range(0, cases_per_family, chunk):
      n = min(chunk, cases_per_family - done)
      drawn = [sample_cases(rng, f, n) for f in batch]
      runs = run_jax(batch, [inputs for inputs, *_ in drawn])
      for f, (inputs, desired, bound, redrawn), run in zip(batch, drawn, runs):
        results[f].append(compare(f, inputs, run, desired, bound, redrawn))
    for parts in results.values():
      yield Result.merge(parts)


def report(families, cases, seed=0):
  """Runs ``cases`` cases over ``families``, printing a row per family and a
  summary line; returns the results."""
  per_family = -(-cases // len(families))
  began = time.perf_counter()
  print(HEADER)
  results = []
  for result in sweep(families, per_family, seed=seed):
    print(result.row(), flush=True)
    results.append(result)
  total = sum(r.cases for r in results)
  ill = sum(r.ill_conditioned for r in results)
  print(
      f"{total} cases in {len(results)} families,"
      f" {sum(r.mismatches for r in results)} mismatches;"
      f" worst deviation/bound: step {max(r.step_ratio for r in results):.3g},"
      f" path {max(r.path_ratio for r in results):.3g}; worst relative"
      f" deviation of a well-conditioned step"
      f" {max(r.step_relative for r in results):.3g}; {ill} cases with an"
      f" ill-conditioned step; {sum(r.redrawn for r in results)} draws"
      f" replaced (out of float32's range); {time.perf_counter() - began:.0f} s"
  )
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", type=int, default=10_240)
  parser.add_argument("--all-families", action="store_true")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  families = all_families() if args.all_families else ci_families()
  report(families, args.cases, seed=args.seed)


if __name__ == "__main__":
  main()
