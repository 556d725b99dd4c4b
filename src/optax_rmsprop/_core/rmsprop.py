"""`rmsprop`: the full optimizer, a documented chain of small transforms."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import optax

from optax_rmsprop._core import scale_by_rms as _scale_by_rms
from optax_rmsprop._core import transforms as _transforms
from optax_rmsprop._rules import validation as _validation


def rmsprop(
    learning_rate: optax.ScalarOrSchedule,
    decay: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    initial_scale: jax.typing.ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Optional[jax.typing.ArrayLike] = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    *,
    lr_in_momentum: bool = True,
    decoupled_weight_decay: Optional[jax.typing.ArrayLike] = None,
    coupled_weight_decay: Optional[jax.typing.ArrayLike] = None,
    weight_decay_mask: Optional[
        Union[Any, Callable[[optax.Params], Any]]
    ] = None,
    maximize: bool = False,
    nu_dtype: Optional[Any] = None,
    momentum_dtype: Optional[Any] = None,
    safe_numerics: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""RMSprop: a drop-in for :func:`optax.rmsprop`, with what it lacks.

  The positional arguments are :func:`optax.rmsprop`'s, with the same
  defaults and the same numbers. For a gradient :math:`g_t`, with
  :math:`\eta_t` = ``learning_rate`` (a schedule is called with the update
  count, from 0), :math:`\beta` = ``momentum``, :math:`\lambda_c` =
  ``coupled_weight_decay``, :math:`\lambda_d` = ``decoupled_weight_decay``,
  and :math:`s(\cdot)` the RMS scaling of :func:`scale_by_rms` (``decay``
  :math:`\rho`, ``eps`` :math:`\epsilon`, ``initial_scale`` :math:`\nu_0`,
  ``eps_in_sqrt``, ``centered``, ``bias_correction``):

  .. math::

    \begin{align*}
      \tilde g_t &\leftarrow \pm g_t + \lambda_c\, p_{t-1}
        && (-g_t \text{ if maximize}) \\
      r_t &\leftarrow s(\tilde g_t) \\
      m_t &\leftarrow \begin{cases}
        \beta\, m_{t-1} - \eta_t r_t & \text{if lr\_in\_momentum (optax, TF)} \\
        \beta\, m_{t-1} + r_t & \text{otherwise (PyTorch)}
      \end{cases} \\
      u_t &\leftarrow \begin{cases}
        m_t & \text{lr in, plain} \\
        \beta\, m_t - \eta_t r_t & \text{lr in, nesterov} \\
        -\eta_t\, m_t & \text{lr out, plain} \\
        -\eta_t (\beta\, m_t + r_t) & \text{lr out, nesterov}
      \end{cases} \\
      u_t &\leftarrow u_t - \eta_t \lambda_d\, p_{t-1} \\
      p_t &\leftarrow p_{t-1} + u_t \quad (\texttt{optax.apply\_updates})
    \end{align*}

  Without ``momentum`` (None) there is no buffer: :math:`u_t = -\eta_t r_t`.
  The two momentum placements are equal for a constant learning rate; under a
  schedule, ``lr_in_momentum=False`` makes an lr change act on the whole
  buffer at once (PyTorch), ``True`` only on new steps (optax, TF1, Keras).

  It is ``optax.chain`` of, in order and only where enabled:
  ``optax.scale(-1)`` (maximize), ``optax.add_decayed_weights`` (coupled L2),
  :func:`scale_by_rms`, then ``optax.scale_by_learning_rate`` and
  :func:`momentum` (``optax.trace``; ``optax.identity()`` without momentum)
  in the order ``lr_in_momentum`` says, and :func:`add_decoupled_weight_decay`.
  With only :func:`optax.rmsprop`'s arguments this is exactly its chain, so
  the state is the same pytree (same classes, same layout) and an
  ``optax.rmsprop`` state continues under this one and vice versa. On
  float32 and float64 leaves the RMS scaling and the momentum are optax's own
  transformations, so a training step (gradient, update and
  ``optax.apply_updates`` in one :func:`jax.jit`, or a :func:`jax.lax.scan`
  of them) lowers to the same program as with :func:`optax.rmsprop`: the same
  bits on every backend, eagerly too. ``None`` gradient leaves give ``None``
  updates.

  Args:
    learning_rate: :math:`\eta` >= 0, a float or an :class:`optax.Schedule`.
    decay: :math:`\rho` in [0, 1].
    eps: :math:`\epsilon` >= 0.
    initial_scale: :math:`\nu_0` >= 0 (PyTorch/Keras 0, TF1 1).
    eps_in_sqrt: :math:`\epsilon` inside the square root (default, optax,
      Keras, TF1) or outside (PyTorch).
    centered: Divide by the root of the variance estimate (Graves, 2013).
    momentum: :math:`\beta` in [0, 1), or None for no momentum buffer.
    nesterov: Nesterov momentum; requires ``momentum``.
    bias_correction: Divide the averages by :math:`1 - \rho^t`.
    lr_in_momentum: Whether the buffer holds lr-scaled steps (optax, TF1,
      Keras; default) or unscaled ones that lr multiplies after (PyTorch).
    decoupled_weight_decay: :math:`\lambda_d` >= 0, AdamW/Keras-style decay:
      lr-scaled, not divided by the RMS, outside the momentum buffer.
    coupled_weight_decay: :math:`\lambda_c` >= 0, L2 regularisation added to
      the gradient before the RMS scaling (PyTorch's ``weight_decay``).
    weight_decay_mask: Tree of booleans, or a function of the params returning
      one, selecting the leaves either decay applies to (None: all).
    maximize: Ascend the objective instead (PyTorch's ``maximize``).
    nu_dtype: Storage dtype of the RMS state (e.g. ``jnp.bfloat16``: half
      the memory, and faster, as a step is memory-bound). Arithmetic is at
      least float32; updates use the state as stored (rounded).
    momentum_dtype: Storage dtype of the momentum buffer (same rules).
    safe_numerics: Opt in to :func:`scale_by_rms`'s overflow restart,
      variance clamp and denominator floor on float32/float64 leaves, whose
      results then differ from optax's in the last bits (False: optax's own
      program, non-finite results included).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Raises:
    ValueError: naming the argument, for a concrete hyperparameter out of
      range, infinite or not a scalar, or ``nesterov`` without ``momentum``.
      Traced hyperparameters (``optax.inject_hyperparams``) are not checked.
    TypeError: naming the argument, for a value of the wrong type: not a
      number (``None``, a string, a bool, a callable other than a learning
      rate schedule), a switch that is not a bool, a dtype that is none.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_rmsprop
    >>> def f(x): return jnp.sum(x ** 2)
    >>> tx = optax_rmsprop.rmsprop(learning_rate=0.003)
    >>> params = jnp.array([1., 2., 3.])
    >>> opt_state = tx.init(params)
    >>> for _ in range(3):
    ...   grads = jax.grad(f)(params)
    ...   updates, opt_state = tx.update(grads, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print(f'{f(params):.4f}')
    13.8864
    13.8046
    13.7363

  References:
    Hinton, `Lecture 6e: rmsprop
    <https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf>`_,
    2012.

    Graves, `Generating Sequences With Recurrent Neural Networks
    <https://arxiv.org/abs/1308.0850>`_, 2013.

    Loshchilov & Hutter, `Decoupled Weight Decay Regularization
    <https://arxiv.org/abs/1711.05101>`_, 2019.

  .. warning::
    The defaults follow optax (``eps_in_sqrt=True``, ``decay=0.9``), not
    PyTorch; to reproduce a PyTorch, Keras or TF1 run use the presets
    (:func:`torch_rmsprop`, :func:`keras_rmsprop`, :func:`tf1_rmsprop`).
    See `optax#532 <https://github.com/google-deepmind/optax/issues/532>`_.
  """
  _validation.check_nonnegative("learning_rate", learning_rate, schedule=True)
  for flag in (
      "eps_in_sqrt",
      "centered",
      "nesterov",
      "bias_correction",
      "lr_in_momentum",
      "maximize",
  ):
    _validation.check_flag(flag, locals()[flag])
  if momentum is not None:
    _validation.check_interval("momentum", momentum, 0.0, 1.0, high_open=True)
  elif nesterov:
    raise ValueError("nesterov=True requires momentum (got momentum=None)")
  _validation.check_nonnegative(
      "coupled_weight_decay", coupled_weight_decay, optional=True
  )
  _validation.check_nonnegative(
      "decoupled_weight_decay", decoupled_weight_decay, optional=True
  )
  _validation.check_dtype("momentum_dtype", momentum_dtype)
  if weight_decay_mask is not None and (
      coupled_weight_decay is None and decoupled_weight_decay is None
  ):
    raise ValueError(
        "weight_decay_mask needs coupled_weight_decay or"
        " decoupled_weight_decay; without either it would do nothing"
    )
  # Python numbers: NumPy's would promote float32 updates under x64.
  learning_rate = _validation.host_scalar(learning_rate)
  coupled_weight_decay = _validation.host_scalar(coupled_weight_decay)
  decoupled_weight_decay = _validation.host_scalar(decoupled_weight_decay)

  steps = []
  if maximize:
    steps.append(optax.scale(-1.0))
  if coupled_weight_decay is not None:
    steps.append(  # optax.add_decayed_weights, its inputs checked by name
        _transforms.add_coupled_weight_decay(
            coupled_weight_decay, weight_decay_mask, "weight_decay_mask"
        )
    )
  steps.append(
      _scale_by_rms.scale_by_rms(
          decay=decay,
          eps=eps,
          initial_scale=initial_scale,
          eps_in_sqrt=eps_in_sqrt,
          centered=centered,
          bias_correction=bias_correction,
          nu_dtype=nu_dtype,
          safe_numerics=safe_numerics,
      )
  )
  lr_step = _transforms.keep_dtypes(optax.scale_by_learning_rate(learning_rate))
  if momentum is None:
    # optax.rmsprop's layout: an identity holds the momentum's place.
    steps.extend([lr_step, optax.identity()])
  else:
    buffer = _transforms.momentum(momentum, nesterov, momentum_dtype)
    steps.extend([lr_step, buffer] if lr_in_momentum else [buffer, lr_step])
  if decoupled_weight_decay is not None:
    steps.append(
        _transforms.masked(
            _transforms.add_decoupled_weight_decay(
                learning_rate, decoupled_weight_decay
            ),
            weight_decay_mask,
            "weight_decay_mask",
        )
    )
  return optax.chain(*steps)
