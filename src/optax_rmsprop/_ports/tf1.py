"""TF1's ``RMSPropOptimizer``, dense and sparse (embedding) updates."""

from __future__ import annotations

from typing import Any, Callable, Union

import jax
import optax

from optax_rmsprop._core import rmsprop as _rmsprop
from optax_rmsprop._ports import switches as _switches
from optax_rmsprop._rules import validation as _validation
from optax_rmsprop._tools import lazy_rows as _lazy_rows


def tf1_rmsprop(
    learning_rate: optax.ScalarOrSchedule,
    decay: jax.typing.ArrayLike = 0.9,
    momentum: jax.typing.ArrayLike = 0.0,
    epsilon: jax.typing.ArrayLike = 1e-10,
    centered: bool = False,
    *,
    sparse: Union[bool, Any, Callable[[optax.Updates], Any]] = False,
) -> optax.GradientTransformationExtraArgs:
  r"""TensorFlow 1's ``tf.compat.v1.train.RMSPropOptimizer``.

  Same arguments and defaults (``use_locking`` and ``name`` have no meaning
  here), plus ``sparse`` for variables TF updates sparsely. For a gradient
  :math:`g_t`, with :math:`\eta_t` = ``learning_rate``, :math:`\rho` =
  ``decay``, :math:`\beta` = ``momentum``, :math:`\epsilon` = ``epsilon``,
  and :math:`\nu_0 = 1`, :math:`\mu_0 = m_0 = 0`:

  .. math::

    \begin{align*}
      \nu_t &\leftarrow \nu_{t-1} + (g_t^2 - \nu_{t-1})(1 - \rho) \\
      \mu_t &\leftarrow \mu_{t-1} + (g_t - \mu_{t-1})(1 - \rho),
        \quad \delta_t \leftarrow \nu_t - \mu_t^2 + \epsilon
        && \text{if centered, else } \delta_t \leftarrow \nu_t + \epsilon \\
      m_t &\leftarrow \beta\, m_{t-1} + \eta_t\, g_t / \sqrt{\delta_t} \\
      p_t &\leftarrow p_{t-1} - m_t
        && \text{sparse: rows } r \text{ with } g_{t,r} = 0
           \text{ keep } \nu, \mu, m, p
    \end{align*}

  The mean square starts at **1** (the ``rms`` slot's ones initializer), so
  the first steps are damped; :math:`\epsilon` is inside the root and the lr
  inside the momentum buffer. It is :func:`rmsprop` with
  ``initial_scale=1``, ``eps_in_sqrt=True`` and ``lr_in_momentum=True``; TF's
  increment form of the average equals :math:`\rho\nu + (1-\rho)g^2` in exact
  arithmetic and differs only in float32 rounding: measured against real
  TensorFlow 2.21 over 500 steps, the parameters agree to a relative 1e-6,
  and 2.6e-6 when centered (see ``docs/porting.md``). TF1 keeps a momentum
  slot even for ``momentum=0``; here there is none (the update is the same),
  for an ``optax.inject_hyperparams`` momentum too (``tx.init`` decides, see
  :func:`torch_rmsprop`).
  A ``learning_rate`` tensor that depends on ``global_step``
  (``tf.train.exponential_decay``, ...) becomes an optax schedule of the
  update count.

  Sparse updates: TF1 gives a variable read through ``tf.gather`` or
  ``tf.nn.embedding_lookup`` an ``IndexedSlices`` gradient, and then updates
  only the rows looked up (``SparseApplyRMSProp``): the other rows' ``rms``,
  ``mg``, ``momentum`` and values stay as they are, instead of decaying and
  coasting on momentum. ``sparse`` selects those variables: the whole
  optimizer runs inside :func:`lazy_rows` with ``sparse`` as its mask (True:
  every leaf with rows; a tree of booleans or a function of the updates:
  the embedding tables only, which is what TF does when the model also has
  dense layers). A row counts as looked up when its gradient is not all
  zero; TF also updates a looked-up row whose gradient is exactly zero,
  which is the one case that differs. Duplicate lookups are summed, in TF
  and in JAX's gather gradient alike. The sparse kernels compute
  :math:`\nu` as :math:`\rho\nu + (1-\rho) g^2`, this optimizer's form:
  against real TensorFlow 2.21 on an embedding table (300 steps, repeated
  lookups, next to a dense variable) the parameters agree to a relative
  3.6e-7, 2.7e-6 when centered, and rows never looked up stay exactly as
  they started (see ``docs/porting.md``).

  Args:
    learning_rate: :math:`\eta` >= 0, a float or an optax schedule.
    decay: :math:`\rho`, decay of the averages, in [0, 1].
    momentum: :math:`\beta` in [0, 1).
    epsilon: :math:`\epsilon` >= 0, added inside the root.
    centered: Divide by the root of the variance estimate instead.
    sparse: False (dense, default), True, or a mask (tree of booleans or a
      function of the updates) of the variables TF updates sparsely
      (embedding tables): their rows with an all-zero gradient are left
      untouched, see :func:`lazy_rows`.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Raises:
    ValueError: naming the argument, if one is out of range.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.tf1_rmsprop(learning_rate=0.1)
    >>> state = tx.init(jnp.zeros(2))
    >>> # first step: -lr * g / sqrt(0.9 + 0.1 g^2), damped by nu_0 = 1
    >>> updates, state = tx.update(jnp.array([1.0, -3.0]), state)
    >>> [round(float(u), 4) for u in updates]
    [-0.1, 0.2236]
    >>> # an embedding table: row 1 is not looked up, so it does not move
    >>> tx = optax_rmsprop.tf1_rmsprop(0.1, momentum=0.9, sparse=True)
    >>> state = tx.init(jnp.zeros((2, 3)))
    >>> grads = jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    >>> for _ in range(2):
    ...   updates, state = tx.update(grads, state)
    >>> updates
    Array([[-0.19..., -0.19..., -0.19...],
           [ 0.     ,  0.     ,  0.     ]], dtype=float32)

  References:
    TensorFlow, `tensorflow/python/training/rmsprop.py
    <https://github.com/tensorflow/tensorflow/blob/master/tensorflow/python/training/rmsprop.py>`_
    and the ``ApplyRMSProp`` / ``ApplyCenteredRMSProp`` kernels in
    ``tensorflow/core/kernels/training_ops.cc`` (sparse:
    ``SparseApplyRMSProp`` / ``SparseApplyCenteredRMSProp``).
  """
  _validation.check_nonnegative("learning_rate", learning_rate, schedule=True)
  _validation.check_interval("decay", decay, 0.0, 1.0)
  _validation.check_interval("momentum", momentum, 0.0, 1.0, high_open=True)
  _validation.check_nonnegative("epsilon", epsilon)
  if not isinstance(sparse, bool) and (
      _validation.is_number_like(sparse) or isinstance(sparse, str)
  ):
    raise TypeError(
        "sparse must be a bool, a tree of bools with the params' structure"
        f" or a function of the gradients returning one, got {sparse!r}"
    )

  def build(on: dict[str, bool]):
    tx = _rmsprop.rmsprop(
        learning_rate=learning_rate,
        decay=decay,
        eps=epsilon,
        initial_scale=1.0,
        eps_in_sqrt=True,
        centered=centered,
        momentum=momentum if on["momentum"] else None,
        lr_in_momentum=True,
    )
    if sparse is False:
      return tx
    return _lazy_rows._lazy(tx, None if sparse is True else sparse, "sparse")

  # No buffer for momentum 0, decided by init (also for an injected value).
  return _switches.init_decides(build, momentum=momentum)
