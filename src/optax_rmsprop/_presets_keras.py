"""`keras_rmsprop`: Keras 3 ``keras.optimizers.RMSprop``, as an optax chain."""

from __future__ import annotations

from typing import Optional

import jax
import optax

from optax_rmsprop import _presets_args
from optax_rmsprop import _rmsprop
from optax_rmsprop import _validation


def keras_rmsprop(
    learning_rate: optax.ScalarOrSchedule = 0.001,
    rho: jax.typing.ArrayLike = 0.9,
    momentum: jax.typing.ArrayLike = 0.0,
    epsilon: jax.typing.ArrayLike = 1e-07,
    centered: bool = False,
    weight_decay: Optional[jax.typing.ArrayLike] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Keras 3's ``keras.optimizers.RMSprop``, same arguments, same defaults.

  For a gradient :math:`g_t`, with :math:`\eta_t` = ``learning_rate``,
  :math:`\rho` = ``rho``, :math:`\beta` = ``momentum``, :math:`\epsilon` =
  ``epsilon``, :math:`\lambda` = ``weight_decay``, and
  :math:`\nu_0 = \mu_0 = m_0 = 0`:

  .. math::

    \begin{align*}
      \nu_t &\leftarrow \rho\, \nu_{t-1} + (1 - \rho)\, g_t^2 \\
      \mu_t &\leftarrow \rho\, \mu_{t-1} + (1 - \rho)\, g_t,
        \quad \delta_t \leftarrow \nu_t - \mu_t^2 + \epsilon
        && \text{if centered, else } \delta_t \leftarrow \nu_t + \epsilon \\
      s_t &\leftarrow \eta_t\, g_t / \sqrt{\delta_t} \\
      m_t &\leftarrow \beta\, m_{t-1} + s_t
        && \text{if } \beta > 0, \text{ else } m_t \leftarrow s_t \\
      p_t &\leftarrow p_{t-1} - \eta_t \lambda\, p_{t-1} - m_t
    \end{align*}

  :math:`\epsilon` is *inside* the root (Keras' docstring says otherwise; its
  code is what runs), the lr is inside the momentum buffer, and weight decay
  is decoupled: Keras applies ``p -= p·λ·η`` before the step with the same
  :math:`\eta_t`, never divided by the RMS and never in the buffer. It is
  :func:`rmsprop` with ``initial_scale=0``, ``eps_in_sqrt=True``,
  ``lr_in_momentum=True`` and ``decoupled_weight_decay=weight_decay``.

  A Keras ``LearningRateSchedule`` is called with ``optimizer.iterations``,
  the number of updates applied before this one, exactly like an optax
  schedule's ``count``; e.g. ``ExponentialDecay(lr, s, r)`` is
  ``optax.exponential_decay(lr, s, r)``, but ``PiecewiseConstantDecay([b],
  [v0, v1])`` switches one step later than ``optax.piecewise_constant_schedule``
  with boundary ``b`` (Keras keeps ``v0`` while ``step <= b``). Measured
  against Keras 3 (JAX backend) over 500 float32 steps, the parameters agree
  to a relative 1.4e-6, and 3.5e-6 with weight decay, which Keras applies as
  a separately rounded ``p - p·λ·η`` (see ``docs/porting.md``). Keras'
  ``exclude_from_weight_decay`` corresponds to ``optax_rmsprop.rmsprop``'s
  ``weight_decay_mask``; gradient clipping, EMA and loss scaling are separate
  optax transforms (``optax.clip_by_global_norm``, ...).

  Args:
    learning_rate: :math:`\eta` >= 0, a float or an optax schedule.
    rho: :math:`\rho`, decay of the averages, in [0, 1].
    momentum: :math:`\beta` in [0, 1).
    epsilon: :math:`\epsilon` >= 0, added inside the root.
    centered: Divide by the root of the variance estimate instead.
    weight_decay: :math:`\lambda` >= 0 or None, decoupled weight decay.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params`` when ``weight_decay`` is set.

  Raises:
    ValueError: naming the argument, if one is out of range.

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

  References:
    Keras, `keras/src/optimizers/rmsprop.py
    <https://github.com/keras-team/keras/blob/master/keras/src/optimizers/rmsprop.py>`_
    and ``base_optimizer.py`` (``_apply_weight_decay``);
    `docs <https://keras.io/api/optimizers/rmsprop/>`_.
  """
  _validation.check_nonnegative("learning_rate", learning_rate)
  _validation.check_interval("rho", rho, 0.0, 1.0)
  _validation.check_interval("momentum", momentum, 0.0, 1.0, high_open=True)
  _validation.check_nonnegative("epsilon", epsilon)
  _validation.check_nonnegative("weight_decay", weight_decay)
  return _rmsprop.rmsprop(
      learning_rate=learning_rate,
      decay=rho,
      eps=epsilon,
      initial_scale=0.0,
      eps_in_sqrt=True,
      centered=centered,
      momentum=_presets_args.unless_off(momentum),
      lr_in_momentum=True,
      decoupled_weight_decay=weight_decay,
  )
