"""`keras_rmsprop`: Keras 3 ``keras.optimizers.RMSprop``, as an optax chain."""

from __future__ import annotations

import re
from typing import Optional, Sequence, Union

import jax
import numpy as np
import optax

from optax_rmsprop._core import rmsprop as _rmsprop
from optax_rmsprop._ports import switches as _switches
from optax_rmsprop._ports.keras import transforms as _keras_transforms
from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._rules import validation as _validation


def keras_rmsprop(
    learning_rate: optax.ScalarOrSchedule = 0.001,
    rho: jax.typing.ArrayLike = 0.9,
    momentum: jax.typing.ArrayLike = 0.0,
    epsilon: jax.typing.ArrayLike = 1e-07,
    centered: bool = False,
    weight_decay: Optional[jax.typing.ArrayLike] = None,
    clipnorm: Optional[jax.typing.ArrayLike] = None,
    clipvalue: Optional[jax.typing.ArrayLike] = None,
    global_clipnorm: Optional[jax.typing.ArrayLike] = None,
    use_ema: bool = False,
    ema_momentum: jax.typing.ArrayLike = 0.99,
    ema_overwrite_frequency: Optional[int] = None,
    loss_scale_factor: Optional[jax.typing.ArrayLike] = None,
    gradient_accumulation_steps: Optional[int] = None,
    name: Optional[str] = None,
    *,
    exclude_from_weight_decay: Optional[Union[str, Sequence[str]]] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Keras 3's ``keras.optimizers.RMSprop``, same arguments, same defaults.

  Every argument of Keras 3.15's ``RMSprop`` (its base optimizer's included),
  in Keras' order; ``name`` is accepted and ignored, and Keras'
  ``exclude_from_weight_decay(var_names=...)`` method is a keyword argument.
  For gradients :math:`g` (the gradients of the *scaled* loss when
  ``loss_scale_factor`` :math:`S` is set), with :math:`\eta_t` =
  ``learning_rate``, :math:`\rho` = ``rho``, :math:`\beta` = ``momentum``,
  :math:`\epsilon` = ``epsilon``, :math:`\lambda` = ``weight_decay``,
  :math:`k` = ``gradient_accumulation_steps`` (1 if None), :math:`\alpha` =
  ``ema_momentum``, :math:`f` = ``ema_overwrite_frequency`` and
  :math:`\nu_0 = \mu_0 = m_0 = 0`, update :math:`t` (from 1) is:

  .. math::

    \begin{align*}
      g_t &\leftarrow \frac{1}{k} \sum_{\text{its } k \text{ calls}} g / S
        && \text{(accumulated; } S = 1 \text{ if None)} \\
      g_t &\leftarrow \begin{cases}
        g_t\, c / \max(\lVert g_t \rVert_2, c) & \text{per leaf, clipnorm } c \\
        g_t \min(1, c / \lVert g_t \rVert_2) & \text{all leaves,
          global\_clipnorm } c \\
        \operatorname{clip}(g_t, -c, c) & \text{clipvalue } c
      \end{cases} \\
      \nu_t &\leftarrow \rho\, \nu_{t-1} + (1 - \rho)\, g_t^2 \\
      \mu_t &\leftarrow \rho\, \mu_{t-1} + (1 - \rho)\, g_t,
        \quad \delta_t \leftarrow \nu_t - \mu_t^2 + \epsilon
        && \text{if centered, else } \delta_t \leftarrow \nu_t + \epsilon \\
      s_t &\leftarrow \eta_t\, g_t / \sqrt{\delta_t} \\
      m_t &\leftarrow \beta\, m_{t-1} + s_t
        && \text{if } \beta > 0, \text{ else } m_t \leftarrow s_t \\
      p_t &\leftarrow p_{t-1} - \eta_t \lambda\, p_{t-1} - m_t
        && \text{(no decay where excluded)} \\
      e_t &\leftarrow \alpha\, e_{t-1} + (1 - \alpha)\, p_t
        && \text{if use\_ema (} e_1 = p_1 \text{)} \\
      p_t &\leftarrow e_t
        && \text{if use\_ema and } f \mid t
    \end{align*}

  :math:`\epsilon` is *inside* the root (Keras' docstring says otherwise; its
  code is what runs), the lr is inside the momentum buffer, and weight decay
  is decoupled: Keras applies ``p -= p·λ·η`` before the step with the same
  :math:`\eta_t`, never divided by the RMS and never in the buffer. The core
  is :func:`rmsprop` with ``initial_scale=0``, ``eps_in_sqrt=True``,
  ``lr_in_momentum=True`` and ``decoupled_weight_decay=weight_decay``; the
  rest is an ``optax.chain`` around it, in Keras' order: division by
  :math:`S`, then ``optax.MultiSteps(..., use_grad_mean=False)``'s
  accumulation (its state, the sum in the params' dtype) around (division
  by :math:`k`, the clip, the core), then the parameter EMA.

  * ``clipnorm`` is per leaf (Keras' per variable), ``global_clipnorm`` is
    :func:`optax.clip_by_global_norm`, ``clipvalue`` :func:`optax.clip`; at
    most one may be set, and 0 turns it off, as in Keras.
  * ``gradient_accumulation_steps`` :math:`k \ge 2`: every call accumulates,
    every :math:`k`-th call updates with the mean and the others return zero
    updates. A schedule is called with Keras' ``iterations`` of the
    updating call, which counts *calls*: update :math:`j` (from 0) gets
    ``learning_rate((j + 1) * k - 1)``. The sum has each parameter's dtype,
    as Keras' accumulators (``optax.MultiSteps`` sums in float32, which in
    float64 put 600 calls up to 6e-7 off Keras; now 1e-13).
  * ``use_ema``: the average of the parameters is in the state, at
    ``optax.tree_utils.tree_get(state, "ema_params")`` (what Keras'
    ``finalize_variable_values`` writes into the model at the end of
    ``fit``). It is updated on every call (accumulating ones too); with
    ``ema_overwrite_frequency`` :math:`f`, every call with
    ``(calls // k + 1) % f == 0`` returns ``ema - params`` as its update, so
    ``optax.apply_updates`` writes the average into the parameters (exactly,
    when the two are within a factor 2 of each other, else to one
    rounding). Needs ``params`` in ``update``.
  * ``loss_scale_factor`` :math:`S`: multiply the loss by :math:`S` (Keras'
    ``optimizer.scale_loss``) yourself; the gradients are divided by
    :math:`S` first.
  * ``exclude_from_weight_decay``: regular expressions (one string or
    several), a leaf is not decayed when one matches anywhere in its path
    written ``jax.tree_util.keystr(path, simple=True, separator="/")``, e.g.
    ``"params/Dense_0/bias"``. Keras matches its ``var_names`` against a
    variable's short name (``"bias"``, ``"gamma"``): those patterns work
    unchanged; to exclude single variables (Keras' ``var_list``), anchor the
    path, e.g. ``"^params/Dense_0/bias$"``.

  A Keras ``LearningRateSchedule`` is called with ``optimizer.iterations``,
  the number of calls before this one, exactly like an optax schedule's
  ``count``; e.g. ``ExponentialDecay(lr, s, r)`` is
  ``optax.exponential_decay(lr, s, r)``, but ``PiecewiseConstantDecay([b],
  [v0, v1])`` switches one step later than ``optax.piecewise_constant_schedule``
  with boundary ``b`` (Keras keeps ``v0`` while ``step <= b``). A Keras
  zero-argument callable ``learning_rate`` has no optax counterpart: pass a
  schedule of the count. Measured against Keras 3.15 (JAX backend) over 500
  float32 steps, the parameters agree to a relative 1.4e-6, and 3.5e-6 with
  weight decay, which Keras applies as a separately rounded ``p - p·λ·η``;
  each of the options above is within 1e-5 (``docs/porting.md`` has the
  numbers). A Keras run is resumed with :func:`from_keras_variables`.

  Args:
    learning_rate: :math:`\eta` >= 0, a float or an optax schedule.
    rho: :math:`\rho`, decay of the averages, in [0, 1].
    momentum: :math:`\beta` in [0, 1).
    epsilon: :math:`\epsilon` >= 0, added inside the root.
    centered: Divide by the root of the variance estimate instead.
    weight_decay: :math:`\lambda` >= 0 or None, decoupled weight decay.
    clipnorm: :math:`c` >= 0 or None: clip each leaf's gradient to this L2
      norm.
    clipvalue: :math:`c` >= 0 or None: clip each gradient element to
      :math:`[-c, c]`.
    global_clipnorm: :math:`c` >= 0 or None: clip all gradients together to
      this L2 norm.
    use_ema: Keep an exponential moving average of the parameters.
    ema_momentum: :math:`\alpha` in [0, 1] (only with ``use_ema``).
    ema_overwrite_frequency: :math:`f`, an int >= 1, or None (or 0): never
      overwrite (only with ``use_ema``).
    loss_scale_factor: :math:`S` > 0 or None: the gradients are divided by it.
    gradient_accumulation_steps: :math:`k`, an int >= 2, or None (or 0):
      update once every :math:`k` calls, with the mean gradient.
    name: Ignored (Keras' name for the optimizer's variables).
    exclude_from_weight_decay: Regular expression(s) matched against each
      leaf's ``/``-joined key path: matching leaves get no weight decay.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params`` when ``weight_decay`` or ``use_ema`` is set. With
    :func:`optax.inject_hyperparams`, pass ``gradient_accumulation_steps``
    and ``ema_overwrite_frequency`` in ``static_args``: they shape the
    state.

  Raises:
    ValueError: naming the argument, if one is out of range or more than one
      of ``clipnorm``, ``clipvalue``, ``global_clipnorm`` is set (as Keras
      does; a negative clip threshold, which Keras ignores, is an error here).

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.keras_rmsprop(learning_rate=0.01, weight_decay=0.5)
    >>> params = jnp.array([1.0, 2.0])
    >>> state = tx.init(params)
    >>> # first step: lr * g / sqrt(0.1 g^2) = 0.0316 * sign(g), plus decay
    >>> updates, state = tx.update(jnp.array([0.5, -2.0]), state, params)
    >>> optax.apply_updates(params, updates)
    Array([0.9634, 2.0216], dtype=float32)

    Accumulating two calls, then the same first step (clipped per leaf):

    >>> tx = optax_rmsprop.keras_rmsprop(
    ...     learning_rate=0.01, clipnorm=1.0, gradient_accumulation_steps=2)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jnp.array([0.4, -1.0]), state, params)
    >>> optax.apply_updates(params, updates)  # accumulated, not applied
    Array([1., 2.], dtype=float32)
    >>> updates, state = tx.update(jnp.array([0.6, -3.0]), state, params)
    >>> optax.apply_updates(params, updates)
    Array([0.9684, 2.0316], dtype=float32)

  References:
    Keras, `keras/src/optimizers/rmsprop.py
    <https://github.com/keras-team/keras/blob/master/keras/src/optimizers/rmsprop.py>`_,
    ``base_optimizer.py`` (``apply``, ``_clip_gradients``,
    ``_apply_weight_decay``, ``_update_model_variables_moving_average``) and
    ``backend/jax/optimizer.py`` (accumulation and EMA overwrite);
    `docs <https://keras.io/api/optimizers/rmsprop/>`_.
  """
  del name  # Keras names its variables with it; optax state has no names.
  _validation.check_nonnegative("learning_rate", learning_rate, schedule=True)
  _validation.check_interval("rho", rho, 0.0, 1.0)
  _validation.check_interval("momentum", momentum, 0.0, 1.0, high_open=True)
  _validation.check_nonnegative("epsilon", epsilon)
  _validation.check_nonnegative("weight_decay", weight_decay, optional=True)
  _validation.check_flag("use_ema", use_ema)
  clip = _clip(clipnorm, clipvalue, global_clipnorm)
  # As Keras: 1 is refused (Keras' check is `>= 2`).
  steps_k = _steps_or_none(
      "gradient_accumulation_steps", gradient_accumulation_steps, 2
  )
  _check_positive("loss_scale_factor", loss_scale_factor)
  if use_ema:
    _validation.check_interval("ema_momentum", ema_momentum, 0.0, 1.0)
    ema_overwrite_frequency = _steps_or_none(
        "ema_overwrite_frequency", ema_overwrite_frequency, 1
    )

  if steps_k is not None and callable(learning_rate):
    # Keras calls the schedule with its call count, not the update count.
    schedule = learning_rate
    learning_rate = lambda count: schedule((count + 1) * steps_k - 1)
  weight_decay_mask = _weight_decay_mask(exclude_from_weight_decay)

  def build(on: dict[str, bool]):
    rms = _rmsprop.rmsprop(
        learning_rate=learning_rate,
        decay=rho,
        eps=epsilon,
        initial_scale=0.0,
        eps_in_sqrt=True,
        centered=centered,
        momentum=momentum if on["momentum"] else None,
        lr_in_momentum=True,
        decoupled_weight_decay=weight_decay,
        weight_decay_mask=weight_decay_mask,
    )
    if clip is None or not on[clip[0]]:
      return rms
    return optax.chain(clip[2], rms)

  # No buffer for momentum 0 and no clipping at 0, decided by init (also for
  # injected values): the clip, then the step.
  switches = {"momentum": momentum}
  if clip is not None:
    switches[clip[0]] = clip[1]
  core = _switches.init_decides(build, **switches)
  # Keras' order (base_optimizer.apply, backend/jax/optimizer.py): unscale;
  # accumulate, and on an updating call average, clip, decay and step; EMA.
  update = [core]
  if steps_k is not None:
    # Keras sums, then divides by k; the sum in the params' dtype, as Keras'
    # accumulators (optax.MultiSteps' float32 sum is off Keras in float64).
    update = [
        _keras_transforms.accumulate_gradients(
            optax.chain(_keras_transforms.divide_by(steps_k), *update), steps_k
        )
    ]
  steps = update
  if loss_scale_factor is not None:
    steps = [_keras_transforms.divide_by(loss_scale_factor)] + steps
  if use_ema:
    steps = steps + [
        _keras_transforms.ema_params(
            ema_momentum, ema_overwrite_frequency, steps_k or 1
        )
    ]
  if len(steps) == 1:
    return optax.with_extra_args_support(steps[0])
  return optax.chain(*steps)


def _clip(clipnorm, clipvalue, global_clipnorm):
  """(argument, value, the clipping transform Keras' ``_clip_gradients``
  applies for it), or None where none is set."""
  given = {
      "clipnorm": clipnorm,
      "clipvalue": clipvalue,
      "global_clipnorm": global_clipnorm,
  }
  given = {k: v for k, v in given.items() if v is not None}
  if len(given) > 1:
    raise ValueError(
        "Only one of clipnorm, clipvalue and global_clipnorm can be set,"
        f" got {given}"
    )
  for arg, value in given.items():
    _validation.check_nonnegative(arg, value)
  clips = {
      "clipnorm": _keras_transforms.clip_by_leaf_norm,
      "global_clipnorm": _keras_transforms.clip_by_global_norm,
      "clipvalue": _keras_transforms.clip_by_value,
  }
  for arg, value in given.items():
    # Keras clips only for a threshold > 0: init decides, from the value.
    return arg, value, clips[arg](value)
  return None  # none set


def _check_positive(arg: str, value) -> None:
  """ValueError unless None, traced, or > 0 (a zero scale would give inf)."""
  _validation.check_nonnegative(arg, value, optional=True)
  if value is None or isinstance(value, jax.core.Tracer):
    return
  if np.any(np.asarray(value) == 0):
    raise ValueError(f"{arg} must be > 0, got {value!r}")


def _steps_or_none(arg: str, value, minimum: int) -> Optional[int]:
  """A Keras step count: None or 0 is off (None), else an int >= minimum."""
  if value is None or (
      not isinstance(value, (bool, str))
      and np.asarray(value).size == 1
      and value == 0
  ):
    return None
  _validation.check_count(arg, value, minimum)
  return int(value)


def _weight_decay_mask(patterns):
  """``exclude_from_weight_decay`` as a mask function of the params."""
  if patterns is None:
    return None
  if isinstance(patterns, str):
    patterns = [patterns]
  if not isinstance(patterns, (list, tuple)) or not all(
      isinstance(p, str) for p in patterns
  ):
    raise TypeError(
        "exclude_from_weight_decay must be a regular expression or a list of"
        f" them, got {patterns!r}"
    )
  if not patterns:
    return None
  # Keras: re.search("|".join(set(var_names)), variable.name).
  try:
    regex = re.compile("|".join(f"(?:{p})" for p in patterns))
  except re.error as e:
    raise ValueError(
        f"exclude_from_weight_decay: bad regular expression {patterns!r}: {e}"
    ) from None

  def decayed(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: regex.search(_trees.path_label(path)) is None,
        params,
    )

  return decayed
