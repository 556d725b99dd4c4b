"""`torch_onecycle_schedules`: ``torch.optim.lr_scheduler.OneCycleLR``'s lr
and momentum, as optax schedules of the update count."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_rmsprop._rules import validation as _validation


class OneCycleSchedules(NamedTuple):
  """The lr and momentum schedules of a one-cycle policy."""

  lr: optax.Schedule
  momentum: Optional[optax.Schedule]  # None unless cycle_momentum


def _is_int(value: Any) -> bool:
  """A Python or NumPy integer, not a bool (torch's checks take True as 1)."""
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def torch_onecycle_schedules(
    max_lr: float,
    total_steps: Optional[int] = None,
    epochs: Optional[int] = None,
    steps_per_epoch: Optional[int] = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    cycle_momentum: bool = True,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> OneCycleSchedules:
  r"""PyTorch's ``OneCycleLR``: its lr and momentum for each update count.

  Same arguments and defaults as ``torch.optim.lr_scheduler.OneCycleLR``
  (without ``optimizer`` and ``last_epoch``; ``max_lr`` and the momenta are
  one number each: give each parameter group its own call). With
  :math:`T` = ``total_steps`` (or ``epochs * steps_per_epoch``),
  :math:`\eta_0 = \eta_{\max} / d`, :math:`\eta_{\min} = \eta_0 / d_f`
  (``div_factor``, ``final_div_factor``), the phases end at update
  :math:`e_1 = p T - 1`, :math:`e_2 = T - 1` (``pct_start`` :math:`p`; with
  ``three_phase``: :math:`e_1 = pT - 1`, :math:`e_2 = 2pT - 2`,
  :math:`e_3 = T - 1`) and, in the phase :math:`(e_{i-1}, e_i]` (from
  :math:`e_0 = 0`) that contains update :math:`k`, going from :math:`a` to
  :math:`b`:

  .. math::

    \eta_k = b + (a - b)\, \sin^2\!\Big(\frac{\pi}{2}
      \frac{e_i - k}{e_i - e_{i-1}}\Big)
      \;\; (\text{cos}), \qquad
    \eta_k = b + (a - b)\, \frac{e_i - k}{e_i - e_{i-1}}
      \;\; (\text{linear})

  which is torch's :math:`b + \frac{a - b}{2}(1 + \cos \pi q)` and
  :math:`a + (b - a) q` with :math:`q = (k - e_{i-1}) / (e_i - e_{i-1})`,
  written without cancellation near the small end values. The lr goes
  :math:`\eta_0 \to \eta_{\max} \to \eta_{\min}` (three phases:
  :math:`\eta_0 \to \eta_{\max} \to \eta_0 \to \eta_{\min}`); the momentum
  the other way, ``max_momentum`` :math:`\to` ``base_momentum`` :math:`\to`
  ``max_momentum``. After update :math:`T - 1` both stay at their last value
  (torch raises there).

  With ``cycle_momentum=True`` (torch's default) ``OneCycleLR`` overwrites
  the optimizer's ``momentum`` with this schedule, so a PyTorch RMSprop built
  with ``momentum=0`` runs with momentum (a buffer) between 0.85 and 0.95;
  port it with ``optax.inject_hyperparams``:
  ``optax.inject_hyperparams(torch_rmsprop)(lr=s.lr, momentum=s.momentum)``.
  The schedules are float32; torch computes in float64, and they agree to a
  relative 9.3e-7 (lr) and 7.2e-8 (momentum), measured with torch 2.13.

  Args:
    max_lr: :math:`\eta_{\max}`, the peak lr.
    total_steps: :math:`T`, the number of updates of the cycle; or give
      ``epochs`` and ``steps_per_epoch``.
    epochs: Number of epochs (with ``steps_per_epoch``).
    steps_per_epoch: Updates per epoch (with ``epochs``).
    pct_start: :math:`p`, the fraction of the cycle spent increasing the lr.
    anneal_strategy: ``"cos"`` or ``"linear"``.
    cycle_momentum: Whether to return a momentum schedule too.
    base_momentum: The lowest momentum, reached at the peak lr.
    max_momentum: The momentum at the start and the end.
    div_factor: :math:`d`: the initial lr is :math:`\eta_{\max} / d`.
    final_div_factor: :math:`d_f`: the final lr is :math:`\eta_0 / d_f`.
    three_phase: Use torch's three-phase variant.

  Returns:
    ``OneCycleSchedules(lr, momentum)``: optax schedules of the update count
    (``momentum`` is None unless ``cycle_momentum``).

  Raises:
    ValueError: with torch's conditions, for a bad ``total_steps``,
      ``epochs``, ``steps_per_epoch``, ``pct_start`` or ``anneal_strategy``.

  Examples:
    >>> import optax
    >>> import optax_rmsprop
    >>> s = optax_rmsprop.torch.torch_onecycle_schedules(
    ...     max_lr=0.1, total_steps=100
    ... )
    >>> [round(float(s.lr(k)), 5) for k in (0, 29, 99)]
    [0.004, 0.1, 0.0]
    >>> [round(float(s.momentum(k)), 3) for k in (0, 29, 99)]
    [0.95, 0.85, 0.95]
    >>> tx = optax.inject_hyperparams(optax_rmsprop.torch_rmsprop)(
    ...     lr=s.lr, momentum=s.momentum)

  References:
    Smith & Topin, `Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates <https://arxiv.org/abs/1708.07120>`_, 2017.

    PyTorch, `torch/optim/lr_scheduler.py
    <https://github.com/pytorch/pytorch/blob/main/torch/optim/lr_scheduler.py>`_
    (``OneCycleLR``).
  """
  _validation.check_nonnegative("max_lr", max_lr)
  for name, value in (
      ("div_factor", div_factor),
      ("final_div_factor", final_div_factor),
  ):
    _validation.check_nonnegative(name, value)
    if _validation.known_at_least(-value, 0.0):  # a divisor of 0
      raise ValueError(f"{name} must be > 0, got {value!r}")
  _validation.check_interval("base_momentum", base_momentum)
  _validation.check_interval("max_momentum", max_momentum)
  _validation.check_flag("cycle_momentum", cycle_momentum)
  _validation.check_flag("three_phase", three_phase)
  if total_steps is not None:
    if not _is_int(total_steps) or not 0 < total_steps < 2**31:
      raise ValueError(
          f"Expected positive integer total_steps, but got {total_steps}"
      )
    total = total_steps
  elif epochs is not None and steps_per_epoch is not None:
    for name, value in (
        ("epochs", epochs),
        ("steps_per_epoch", steps_per_epoch),
    ):
      if not _is_int(value) or not 0 < value < 2**31:
        raise ValueError(f"Expected positive integer {name}, but got {value}")
    total = epochs * steps_per_epoch
  else:
    raise ValueError(
        "You must define either total_steps OR (epochs AND steps_per_epoch)"
    )
  if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
    raise ValueError(
        f"Expected float between 0 and 1 pct_start, but got {pct_start}"
    )
  if anneal_strategy not in ("cos", "linear"):
    raise ValueError(
        "anneal_strategy must be one of 'cos' or 'linear', instead got"
        f" {anneal_strategy}"
    )

  initial = max_lr / div_factor
  final = initial / final_div_factor
  if three_phase:
    ends = [pct_start * total - 1, 2 * pct_start * total - 2, total - 1]
    lrs = [initial, max_lr, initial, final]
    momenta = [max_momentum, base_momentum, max_momentum, max_momentum]
  else:
    ends = [pct_start * total - 1, total - 1]
    lrs = [initial, max_lr, final]
    momenta = [max_momentum, base_momentum, max_momentum]
  cosine = anneal_strategy == "cos"
  momentum = _phases(ends, momenta, cosine) if cycle_momentum else None
  return OneCycleSchedules(_phases(ends, lrs, cosine), momentum)


def _phases(
    ends: Sequence[float], values: Sequence[float], cosine: bool
) -> optax.Schedule:
  """The schedule going from values[i] to values[i + 1] over phase i, which
  ends at update ends[i] (torch's phases: a phase holds its end step)."""
  starts = [0.0] + list(ends[:-1])

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    k = jnp.asarray(count, jnp.float32)

    def phase(i: int) -> jax.Array:
      a, b, start, end = values[i], values[i + 1], starts[i], ends[i]
      # The fraction of the phase still ahead: 1 - torch's pct, exactly;
      # 0 after the last phase, which then holds its end value.
      ahead = jnp.clip((end - k) / max(end - start, 1e-12), 0.0, 1.0)
      if cosine:
        ahead = jnp.sin((math.pi / 2) * ahead) ** 2
      return b + (a - b) * ahead

    out = phase(len(ends) - 1)
    for i in reversed(range(len(ends) - 1)):  # the first phase holding k wins
      out = jnp.where(k <= ends[i], phase(i), out)
    return out

  return schedule
