"""`dqn_rmsprop`: the RMSprop of DeepMind's Nature DQN (2015), as optax."""

from __future__ import annotations

import jax
import optax

from optax_rmsprop._core import rmsprop as _rmsprop
from optax_rmsprop._ports import switches as _switches
from optax_rmsprop._rules import validation as _validation


def dqn_rmsprop(
    learning_rate: optax.ScalarOrSchedule = 0.00025,
    decay: jax.typing.ArrayLike = 0.95,
    eps: jax.typing.ArrayLike = 0.01,
    weight_cost: jax.typing.ArrayLike = 0.0,
) -> optax.GradientTransformationExtraArgs:
  r"""The RMSprop of the Nature DQN agent (Mnih et al., 2015), DQN 3.0 Lua.

  The Lua code (``nql:qLearnMinibatch``) takes no optimizer arguments: decay
  0.95 and the "min squared gradient" 0.01 are literals, the lr is the
  agent's ``lr`` (0.00025 in the published run script; the code's own
  default is 0.01) and ``wc`` its L2 weight cost. So the arguments here are
  those literals, named after :func:`rmsprop`'s, and the defaults are the
  published values. It is centered RMSprop with :math:`\epsilon` inside the
  root, state at 0 and no momentum (the Lua ``deltas`` buffer is zeroed every
  step). In descent terms, for a gradient :math:`g_t` of the loss, with
  :math:`\eta_t` = ``learning_rate``, :math:`\rho` = ``decay``,
  :math:`\epsilon` = ``eps``, :math:`c` = ``weight_cost`` and
  :math:`\nu_0 = \mu_0 = 0`:

  .. math::

    \begin{align*}
      \tilde g_t &\leftarrow g_t + c\, p_{t-1} \\
      \mu_t &\leftarrow \rho\, \mu_{t-1} + (1 - \rho)\, \tilde g_t \\
      \nu_t &\leftarrow \rho\, \nu_{t-1} + (1 - \rho)\, \tilde g_t^2 \\
      p_t &\leftarrow p_{t-1} - \eta_t\, \tilde g_t /
        \sqrt{\nu_t - \mu_t^2 + \epsilon}
    \end{align*}

  (The Lua ``dw`` is the ascent direction :math:`-\tilde g_t`; its signs
  cancel in :math:`\mu^2` and :math:`\tilde g/\sqrt{\cdot}`.) It is
  :func:`rmsprop` with ``centered=True``, ``eps_in_sqrt=True``,
  ``initial_scale=0`` and ``coupled_weight_decay=weight_cost``. The Lua
  linear lr annealing from ``lr`` to ``lr_end`` over ``lr_endt`` steps is
  ``optax.linear_schedule(lr, lr_end, lr_endt)`` (constant in the published
  settings). Dopamine's TF1 reproduction (``dqn_nature.gin``: TF1 RMSProp,
  decay 0.95, epsilon 1e-5, centered, so :math:`\nu_0 = 1`) is
  :func:`tf1_rmsprop`, not this. Measured against a NumPy transcription of
  the Lua code over 500 float32 steps, the parameters agree to a relative
  1e-6 (see ``docs/porting.md``).

  Args:
    learning_rate: :math:`\eta` >= 0, a float or an optax schedule.
    decay: :math:`\rho` in [0, 1] (Lua literal 0.95).
    eps: :math:`\epsilon` >= 0, inside the root (Lua literal 0.01).
    weight_cost: :math:`c` >= 0, L2 weight cost (Lua ``wc``, default 0).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params`` when ``weight_cost`` is nonzero.

  Raises:
    ValueError: naming the argument, if one is out of range.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.dqn_rmsprop()
    >>> state = tx.init(jnp.zeros(2))
    >>> # first step: -lr * g / sqrt(0.95 * 0.05 g^2 + eps)
    >>> updates, state = tx.update(jnp.array([1.0, -3.0]), state)
    >>> print((updates / 0.00025).round(3))
    [-4.17   4.536]

  References:
    Mnih et al., `Human-level control through deep reinforcement learning
    <https://doi.org/10.1038/nature14236>`_, Nature 518, 2015.

    DQN 3.0 Lua code, ``dqn/NeuralQLearner.lua`` (``nql:qLearnMinibatch``),
    e.g. the mirror `kuz/DeepMind-Atari-Deep-Q-Learner
    <https://github.com/kuz/DeepMind-Atari-Deep-Q-Learner>`_.
  """
  _validation.check_nonnegative("learning_rate", learning_rate, schedule=True)
  _validation.check_interval("decay", decay, 0.0, 1.0)
  _validation.check_nonnegative("eps", eps)
  _validation.check_nonnegative("weight_cost", weight_cost)

  def build(on: dict[str, bool]):
    return _rmsprop.rmsprop(
        learning_rate=learning_rate,
        decay=decay,
        eps=eps,
        initial_scale=0.0,
        eps_in_sqrt=True,
        centered=True,
        coupled_weight_decay=weight_cost if on["weight_cost"] else None,
    )

  # No decay for weight_cost 0, decided by init (also for an injected value).
  return _switches.init_decides(build, weight_cost=weight_cost)
