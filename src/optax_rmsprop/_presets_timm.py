"""timm's ``RMSpropTF``: PyTorch code that reproduces TF1's RMSprop."""

from __future__ import annotations

import jax
import optax

from optax_rmsprop import _presets_args
from optax_rmsprop import _rmsprop
from optax_rmsprop import _validation


def timm_rmsprop_tf(
    lr: optax.ScalarOrSchedule = 0.01,
    alpha: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-10,
    weight_decay: jax.typing.ArrayLike = 0,
    momentum: jax.typing.ArrayLike = 0.0,
    centered: bool = False,
    decoupled_decay: bool = False,
    lr_in_momentum: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""timm's ``RMSpropTF``: PyTorch code that reproduces TF1's RMSprop.

  Same arguments and defaults (timm's newer ``caution`` option is not
  reproduced). For a gradient :math:`g_t`, with :math:`\eta_t` = ``lr``,
  :math:`\alpha` = ``alpha``, :math:`\epsilon` = ``eps``, :math:`\lambda` =
  ``weight_decay``, :math:`\beta` = ``momentum``, and :math:`\nu_0 = 1`,
  :math:`\mu_0 = b_0 = 0`:

  .. math::

    \begin{align*}
      \tilde g_t &\leftarrow g_t + \lambda\, p_{t-1}
        && \text{unless decoupled\_decay} \\
      \nu_t &\leftarrow \nu_{t-1} + (1 - \alpha)(\tilde g_t^2 - \nu_{t-1}) \\
      d_t &\leftarrow \sqrt{\nu_t - \mu_t^2 + \epsilon}, \quad
        \mu_t \leftarrow \mu_{t-1} + (1 - \alpha)(\tilde g_t - \mu_{t-1})
        && \text{if centered, else } d_t \leftarrow \sqrt{\nu_t + \epsilon} \\
      u_t &\leftarrow \begin{cases}
        b_t, \ b_t \leftarrow \beta\, b_{t-1} + \eta_t\, \tilde g_t / d_t
          & \text{lr\_in\_momentum (TF)} \\
        \eta_t b_t, \ b_t \leftarrow \beta\, b_{t-1} + \tilde g_t / d_t
          & \text{otherwise (PyTorch)}
      \end{cases} \\
      p_t &\leftarrow p_{t-1} - \eta_t \lambda\, p_{t-1} - u_t
        && \text{if decoupled\_decay, else } p_t \leftarrow p_{t-1} - u_t
    \end{align*}

  With ``momentum=0`` there is no buffer: :math:`u_t = \eta_t \tilde g_t /
  d_t`. timm's decoupled decay ``p.mul_(1 - lr * weight_decay)`` before the
  step is :math:`-\eta_t\lambda p_{t-1}`, lr-scaled, never divided by the RMS
  and never in the buffer: exactly :func:`add_decoupled_weight_decay`. So
  this is :func:`rmsprop` with ``initial_scale=1``, ``eps_in_sqrt=True``,
  ``lr_in_momentum`` as given, and ``weight_decay`` as
  ``decoupled_weight_decay`` or ``coupled_weight_decay``. Measured against a
  NumPy transcription of timm's code over 500 float32 steps, the parameters
  agree to a relative 3.2e-6, and 7.6e-6 with ``decoupled_decay``: timm's
  float32 factor ``1 - lr·λ`` is off by up to an ulp of 1, in the same
  direction at every step (see ``docs/porting.md``).

  Args:
    lr: :math:`\eta` >= 0, a float or an optax schedule.
    alpha: :math:`\alpha`, decay of the averages, in [0, 1].
    eps: :math:`\epsilon` >= 0, added inside the root.
    weight_decay: :math:`\lambda` >= 0.
    momentum: :math:`\beta` in [0, 1).
    centered: Divide by the root of the variance estimate instead.
    decoupled_decay: Decoupled (AdamW-style) decay instead of L2.
    lr_in_momentum: Accumulate lr-scaled steps in the buffer (TF, default) or
      unscaled ones that lr multiplies after (PyTorch).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params`` when ``weight_decay`` is nonzero.

  Raises:
    ValueError: naming the argument, if one is out of range.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.timm_rmsprop_tf(
    ...     lr=0.1, weight_decay=0.5, decoupled_decay=True)
    >>> params = jnp.array([2.0, 2.0])
    >>> state = tx.init(params)
    >>> # p * (1 - lr wd) - lr * g / sqrt(0.9 + 0.1 g^2)
    >>> updates, state = tx.update(jnp.array([1.0, -3.0]), state, params)
    >>> print(optax.apply_updates(params, updates).round(4))
    [1.8    2.1236]

  References:
    timm, `timm/optim/rmsprop_tf.py
    <https://github.com/huggingface/pytorch-image-models/blob/main/timm/optim/rmsprop_tf.py>`_.
  """
  # timm's own checks (lr, eps, momentum, weight_decay, alpha >= 0), plus the
  # ranges the core needs, under timm's argument names.
  _validation.check_nonnegative("lr", lr)
  _validation.check_interval("alpha", alpha, 0.0, 1.0)
  _validation.check_nonnegative("eps", eps)
  _validation.check_nonnegative("weight_decay", weight_decay)
  _validation.check_interval("momentum", momentum, 0.0, 1.0, high_open=True)
  weight_decay = _presets_args.unless_off(weight_decay)
  return _rmsprop.rmsprop(
      learning_rate=lr,
      decay=alpha,
      eps=eps,
      initial_scale=1.0,
      eps_in_sqrt=True,
      centered=centered,
      momentum=_presets_args.unless_off(momentum),
      lr_in_momentum=lr_in_momentum,
      coupled_weight_decay=None if decoupled_decay else weight_decay,
      decoupled_weight_decay=weight_decay if decoupled_decay else None,
  )
