"""timm's ``RMSpropTF``: PyTorch code that reproduces TF1's RMSprop."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax

from optax_rmsprop._core import rmsprop as _rmsprop
from optax_rmsprop._core import transforms as _transforms
from optax_rmsprop._ports import switches as _switches
from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._rules import validation as _validation
from optax_rmsprop._tools import caution as _caution


def _decay_learning_rate(lr, corrected: bool, max_lr: Optional[float]):
  """The lr decoupled decay is scaled by: timm's ``wd_scale``."""
  if not corrected:
    return lr
  if callable(lr):
    if max_lr is None:
      raise ValueError(
          "corrected_weight_decay with an lr schedule needs max_lr: the lr"
          " timm's optimizer was constructed with (the peak lr)"
      )
    return lambda count: lr(count) ** 2 / max_lr
  return lr**2 / (lr if max_lr is None else max_lr)


def _multiplicative_decay(
    learning_rate: optax.ScalarOrSchedule, weight_decay: jax.typing.ArrayLike
) -> optax.GradientTransformation:
  """timm's decoupled decay ``p.mul_(1 - lr·λ)`` as an update, p·k − p.

  The factor k = 1 − η_t λ is rounded to the params' dtype, as timm's is: in
  float32 it is off from 1 − η_t λ by up to half an ulp of 1, in the same
  direction at every step, which an additive −η_t λ p does not reproduce
  (it drifts linearly: 7.6e-6 relative after 500 steps, 1e-5 when λη is
  small). p·k − p is exact (Sterbenz), so only k's rounding is timm's.
  """
  lr_scaling = optax.scale_by_learning_rate(learning_rate, flip_sign=False)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
          "decoupled weight decay needs the params: call"
          " tx.update(grads, state, params)"
      )
    updates, params = _trees.as_arrays(updates), _trees.as_arrays(params)
    # lr·λ and 1 − lr·λ in the params' (real) dtype, float32 at least: timm
    # computes them in float64 (Python floats), so float64 params need them
    # in float64, not rounded to float32.
    compute = lambda p: jnp.promote_types(jnp.finfo(p.dtype).dtype, jnp.float32)
    dtypes = sorted(
        {jnp.dtype(compute(p)) for p in jax.tree.leaves(params)}, key=str
    )
    rates, state = lr_scaling.update(
        tuple(jnp.asarray(weight_decay, d) for d in dtypes), state
    )
    rate_of = dict(zip(dtypes, rates))

    def decay(u, p):
      factor = (1 - rate_of[jnp.dtype(compute(p))]).astype(p.dtype)
      return u + (p * factor - p).astype(u.dtype)

    decayed = _trees.map_leaves(decay, updates, params)
    return decayed, state

  return optax.GradientTransformation(lr_scaling.init, update_fn)


def timm_rmsprop_tf(
    lr: optax.ScalarOrSchedule = 0.01,
    alpha: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-10,
    weight_decay: jax.typing.ArrayLike = 0,
    momentum: jax.typing.ArrayLike = 0.0,
    centered: bool = False,
    decoupled_decay: bool = False,
    corrected_weight_decay: bool = False,
    lr_in_momentum: bool = True,
    caution: bool = False,
    foreach: Optional[bool] = None,
    *,
    max_lr: Optional[float] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""timm's ``RMSpropTF``: PyTorch code that reproduces TF1's RMSprop.

  Every argument of timm 1.0.31's ``RMSpropTF``, in its order, with its
  defaults (``foreach`` picks timm's kernel and changes nothing here), plus
  ``max_lr`` for ``corrected_weight_decay`` under a schedule. For a gradient
  :math:`g_t`, with :math:`\eta_t` = ``lr``, :math:`\alpha` = ``alpha``,
  :math:`\epsilon` = ``eps``, :math:`\lambda` = ``weight_decay``,
  :math:`\beta` = ``momentum``, and :math:`\nu_0 = 1`, :math:`\mu_0 = b_0 =
  0`:

  .. math::

    \begin{align*}
      \tilde g_t &\leftarrow g_t + \lambda\, p_{t-1}
        && \text{unless decoupled\_decay} \\
      \nu_t &\leftarrow \nu_{t-1} + (1 - \alpha)(\tilde g_t^2 - \nu_{t-1}) \\
      d_t &\leftarrow \sqrt{\nu_t - \mu_t^2 + \epsilon}, \quad
        \mu_t \leftarrow \mu_{t-1} + (1 - \alpha)(\tilde g_t - \mu_{t-1})
        && \text{if centered, else } d_t \leftarrow \sqrt{\nu_t + \epsilon} \\
      b_t &\leftarrow \begin{cases}
        \beta\, b_{t-1} + \eta_t\, \tilde g_t / d_t,
          \ s_t = 1 & \text{lr\_in\_momentum (TF)} \\
        \beta\, b_{t-1} + \tilde g_t / d_t, \ s_t = \eta_t
          & \text{otherwise (PyTorch)}
      \end{cases} \\
      \phi_t &\leftarrow \mathbb{1}[b_t \odot \tilde g_t > 0], \quad
        c_t \leftarrow \phi_t / \max(\operatorname{mean}(\phi_t), 10^{-3})
        && \text{if caution, else } c_t \leftarrow 1 \\
      \omega_t &\leftarrow \eta_t^2 / \eta_{\max}
        && \text{if corrected\_weight\_decay, else } \omega_t = \eta_t \\
      p_t &\leftarrow p_{t-1}(1 - \omega_t \lambda)
        - s_t\, b_t \odot c_t
        && (\text{the } \omega_t\lambda \text{ term only if decoupled\_decay})
    \end{align*}

  With ``momentum=0`` there is no buffer and no caution (timm masks only the
  momentum step): :math:`p_t = p_{t-1} - \eta_t \tilde g_t / d_t`. Caution
  masks the step, not the buffer, per parameter tensor (Liang et al., 2024;
  :func:`cautious`). Corrected weight decay (Chou, 2025) scales the
  decoupled decay by :math:`\eta_t^2/\eta_{\max}`, where timm's
  :math:`\eta_{\max}` is the lr the optimizer was constructed with: for a
  float ``lr`` that is ``lr`` (and the decay is the usual one), for a
  schedule pass it as ``max_lr``. timm's decoupled decay ``p.mul_(1 -
  wd_scale * weight_decay)`` is never divided by the RMS and never in the
  buffer; it is added as the update :math:`p_{t-1} k_t - p_{t-1}` with
  :math:`k_t = 1 - \omega_t \lambda` rounded to the params' dtype, as timm
  rounds it (an additive :math:`-\omega_t\lambda p` drifts from timm by
  that rounding, the same way at every step).

  So this is :func:`rmsprop` with ``initial_scale=1``, ``eps_in_sqrt=True``
  and ``lr_in_momentum`` as given, inside :func:`cautious` when ``caution``,
  with the coupled decay before it and the decoupled decay after it.
  Measured against a NumPy transcription of timm's code over 500 float32
  steps (every combination of the options, 4 lr schedules), the parameters
  agree to a relative 5.5e-6; against real timm 1.0.31, to 3.6e-6 (see
  ``docs/porting.md``).

  Args:
    lr: :math:`\eta` >= 0, a float or an optax schedule.
    alpha: :math:`\alpha`, decay of the averages, in [0, 1].
    eps: :math:`\epsilon` >= 0, added inside the root.
    weight_decay: :math:`\lambda` >= 0.
    momentum: :math:`\beta` in [0, 1).
    centered: Divide by the root of the variance estimate instead.
    decoupled_decay: Decoupled (AdamW-style) decay instead of L2.
    corrected_weight_decay: Scale the decoupled decay by
      :math:`\eta_t^2 / \eta_{\max}` instead of :math:`\eta_t`.
    lr_in_momentum: Accumulate lr-scaled steps in the buffer (TF, default) or
      unscaled ones that lr multiplies after (PyTorch).
    caution: Mask the momentum step where it disagrees in sign with the
      gradient and rescale by the fraction kept (needs ``momentum``).
    foreach: timm's choice of kernel; accepted and ignored.
    max_lr: :math:`\eta_{\max}` > 0 for ``corrected_weight_decay``: the lr
      timm's optimizer was constructed with. Needed only when ``lr`` is a
      schedule; defaults to ``lr`` for a float.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params`` when ``weight_decay`` is nonzero.

  Raises:
    ValueError: naming the argument, if one is out of range, or if
      ``corrected_weight_decay`` has no positive max lr.

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
    >>> tx = optax_rmsprop.timm_rmsprop_tf(lr=0.1, momentum=0.9, caution=True)
    >>> state = tx.init(params)
    >>> _, state = tx.update(jnp.array([1.0, 1.0]), state, params)
    >>> # the buffer still points down in both; the gradient flipped in one
    >>> updates, state = tx.update(jnp.array([1.0, -0.1]), state, params)
    >>> updates  # masked where uphill, the other doubled (half were kept)
    Array([-0.38..., 0. ], dtype=float32)

  References:
    timm 1.0.31, `timm/optim/rmsprop_tf.py
    <https://github.com/huggingface/pytorch-image-models/blob/main/timm/optim/rmsprop_tf.py>`_
    (``RMSpropTF``, ``_single_tensor_rmsprop_tf``).

    Liang, Chen, Liu & Liu, `Cautious Optimizers: Improving Training with One
    Line of Code <https://arxiv.org/abs/2411.16085>`_, 2024.

    Chou, `Why Gradients Rapidly Increase Near the End of Training
    <https://arxiv.org/abs/2506.02285>`_, 2025 (corrected weight decay).
  """
  del foreach  # timm's single- or multi-tensor kernel: the same arithmetic
  # timm's own checks (lr, eps, momentum, weight_decay, alpha >= 0), plus the
  # ranges the core needs, under timm's argument names.
  _validation.check_nonnegative("lr", lr, schedule=True)
  _validation.check_interval("alpha", alpha, 0.0, 1.0)
  _validation.check_nonnegative("eps", eps)
  _validation.check_nonnegative("weight_decay", weight_decay)
  _validation.check_interval("momentum", momentum, 0.0, 1.0, high_open=True)
  for flag in ("decoupled_decay", "corrected_weight_decay", "caution"):
    _validation.check_flag(flag, locals()[flag])
  _validation.check_nonnegative("max_lr", max_lr, optional=True)
  peak = lr if max_lr is None else max_lr
  if corrected_weight_decay and not callable(peak):
    # timm: "Corrected weight decay requires a positive max lr".
    _validation.check_nonnegative("max_lr", peak)
    if _validation.known_at_least(-peak, 0.0):
      raise ValueError(
          "corrected_weight_decay needs a positive max lr (timm: the lr the"
          f" optimizer was constructed with), got {peak!r}"
      )
  decay_lr = None  # the lr of the decoupled decay, checked now
  if decoupled_decay and _switches.known_on(weight_decay) is not False:
    decay_lr = _decay_learning_rate(lr, corrected_weight_decay, max_lr)

  def build(on: dict[str, bool]):
    decay = weight_decay if on["weight_decay"] else None
    beta = momentum if on["momentum"] else None
    coupled = None if decoupled_decay else decay
    decoupled = decay if decoupled_decay else None
    use_caution = caution and beta is not None
    # Caution masks the final update, so coupled decay must come before it,
    # outside the cautious part; otherwise rmsprop's own coupled decay does.
    inner_coupled = None if use_caution else coupled
    step = _rmsprop.rmsprop(
        learning_rate=lr,
        decay=alpha,
        eps=eps,
        initial_scale=1.0,
        eps_in_sqrt=True,
        centered=centered,
        momentum=beta,
        lr_in_momentum=lr_in_momentum,
        coupled_weight_decay=inner_coupled,
    )
    if not use_caution and decoupled is None:
      return step
    steps = []
    if use_caution and coupled is not None:
      steps.append(_transforms.add_coupled_weight_decay(coupled))
    steps.append(_caution.cautious(step) if use_caution else step)
    if decoupled is not None:
      steps.append(_multiplicative_decay(decay_lr, decoupled))
    return optax.chain(*steps)

  # No buffer (and so no caution) for momentum 0 and no decay for
  # weight_decay 0, decided by init (also for injected values).
  return _switches.init_decides(
      build, momentum=momentum, weight_decay=weight_decay
  )
