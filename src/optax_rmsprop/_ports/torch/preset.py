"""`torch_rmsprop`: ``torch.optim.RMSprop``'s update, as an optax chain."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_rmsprop._core import rmsprop as _rmsprop
from optax_rmsprop._ports import switches as _switches
from optax_rmsprop._rules import optax_compat as _optax_compat
from optax_rmsprop._rules import validation as _validation


def torch_rmsprop(
    lr: optax.ScalarOrSchedule = 0.01,
    alpha: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-08,
    weight_decay: jax.typing.ArrayLike = 0.0,
    momentum: jax.typing.ArrayLike = 0.0,
    centered: bool = False,
    capturable: bool = False,
    foreach: Optional[bool] = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""PyTorch's ``torch.optim.RMSprop``, same arguments, same defaults.

  For a gradient :math:`g_t`, with :math:`\eta_t` = ``lr``, :math:`\alpha` =
  ``alpha``, :math:`\epsilon` = ``eps``, :math:`\lambda` = ``weight_decay``,
  :math:`\beta` = ``momentum``, and :math:`\nu_0 = \mu_0 = b_0 = 0`:

  .. math::

    \begin{align*}
      \tilde g_t &\leftarrow \pm g_t + \lambda\, p_{t-1}
        && (-g_t \text{ if maximize}) \\
      \nu_t &\leftarrow \alpha\, \nu_{t-1} + (1 - \alpha)\, \tilde g_t^2 \\
      \mu_t &\leftarrow \alpha\, \mu_{t-1} + (1 - \alpha)\, \tilde g_t,
        \quad d_t \leftarrow \sqrt{\nu_t - \mu_t^2} + \epsilon
        && \text{if centered, else } d_t \leftarrow \sqrt{\nu_t} + \epsilon \\
      b_t &\leftarrow \beta\, b_{t-1} + \tilde g_t / d_t,
        \quad p_t \leftarrow p_{t-1} - \eta_t\, b_t
        && \text{if } \beta > 0 \\
      p_t &\leftarrow p_{t-1} - \eta_t\, \tilde g_t / d_t
        && \text{if } \beta = 0
    \end{align*}

  :math:`\epsilon` is added *outside* the root, the buffer holds unscaled
  steps (an lr change acts on it at once) and weight decay is L2 added to the
  gradient after the maximize flip. It is :func:`rmsprop` with
  ``initial_scale=0``, ``eps_in_sqrt=False``, ``lr_in_momentum=False``,
  ``coupled_weight_decay=weight_decay`` and ``maximize``, wrapped in
  ``optax.contrib.split_real_and_imaginary``; like PyTorch it has a momentum
  buffer only for ``momentum > 0``. That is decided by ``init``, also for
  values ``optax.inject_hyperparams`` injects as arrays (from the value when
  ``init`` runs eagerly, as usual; a traced value counts as nonzero), and
  ``update`` follows the state, so injected and plain hyperparameters give
  the same state and the same updates; a state initialised with momentum
  (or weight_decay) 0 cannot take a nonzero one later (ValueError).

  **Complex parameters** follow PyTorch (``torch.view_as_real``): the real and
  imaginary parts are two real parameters, each with its own running
  averages, so the formulas above hold for each part and
  :math:`\tilde g_t^2` is the square of that part (4.5e-7 from torch 2.13
  over PyTorch's own RMSprop test configurations, 200 steps). (The core
  :func:`scale_by_rms` and :func:`rmsprop` keep optax's convention instead,
  one average of :math:`|g|^2` per complex element: the step is then
  invariant to the phase of the gradient, and it is what
  :func:`optax.rmsprop` does.) The state holds the two parts as an
  ``optax.contrib`` ``SplitRealAndImaginaryArrays`` pair; real parameters
  are untouched. As in optax, a JAX gradient of a real loss is the conjugate
  of PyTorch's: pass ``jax.tree.map(jnp.conj, grads)``.

  ``capturable``, ``foreach`` and ``differentiable`` choose PyTorch kernels
  (CUDA graphs, multi-tensor ops, autograd through the step) and do not
  change the numbers; they are accepted so that a copied call works, and
  ignored (``jax.jit`` compiles the step anyway, and it is differentiable).
  ``lr`` may be a one-element array or ``torch.Tensor``, as in PyTorch; one
  with more elements is rejected, as PyTorch does.

  A PyTorch lr scheduler corresponds to an optax schedule: ``lr(count)`` is
  the lr of update ``count`` (from 0), e.g. ``ExponentialLR(opt, gamma)``
  stepped after each update is ``optax.exponential_decay(lr, 1, gamma)``;
  per-epoch stepping, warm-up, one-cycle and plateau schedulers are in
  ``docs/porting.md``. Measured against torch 2.13 over 500 float32 steps,
  the parameters agree to a relative 1.2e-6, and 6.6e-6 when centered, where
  PyTorch's ``lerp`` average of the gradient rounds differently (see
  ``docs/porting.md``). Where rounding makes the centered variance
  negative, the root is NaN, as in PyTorch.

  Args:
    lr: :math:`\eta` >= 0: a float, a one-element array or tensor, or an
      optax schedule.
    alpha: :math:`\alpha`, smoothing constant, in [0, 1].
    eps: :math:`\epsilon` >= 0, added to the root.
    weight_decay: :math:`\lambda` >= 0, L2 penalty added to the gradient.
    momentum: :math:`\beta` in [0, 1).
    centered: Divide by the root of the variance estimate instead.
    capturable: Accepted and ignored (PyTorch: CUDA-graph capture).
    foreach: Accepted and ignored (PyTorch: multi-tensor kernels).
    maximize: Maximize the objective (the gradient is negated first).
    differentiable: Accepted and ignored (PyTorch: autograd through the
      step; a JAX update is always differentiable).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`; ``update`` needs
    ``params`` when ``weight_decay`` is nonzero.

  Raises:
    ValueError: naming the argument, if one is out of range, or if ``lr`` is
      an array with more than one element.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.torch_rmsprop(lr=0.01, momentum=0.9)
    >>> params = jnp.array([1.0, 2.0])
    >>> state = tx.init(params)
    >>> # first step: nu = 0.01 g^2, so the step is lr * g / (0.1 |g|)
    >>> updates, state = tx.update(jnp.array([0.5, -2.0]), state, params)
    >>> print(optax.apply_updates(params, updates).round(4))
    [0.9 2.1]

  References:
    PyTorch, `torch/optim/rmsprop.py
    <https://github.com/pytorch/pytorch/blob/main/torch/optim/rmsprop.py>`_
    (``_single_tensor_rmsprop``);
    `docs <https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html>`_.
  """
  del capturable, foreach, differentiable  # kernel choices, same numbers
  lr = _one_element_lr(lr)
  # PyTorch's own checks (lr, eps, momentum, weight_decay, alpha >= 0), plus
  # the ranges the core needs, under PyTorch's argument names.
  _validation.check_nonnegative("lr", lr, schedule=True)
  _validation.check_interval("alpha", alpha, 0.0, 1.0)
  _validation.check_nonnegative("eps", eps)
  _validation.check_nonnegative("weight_decay", weight_decay)
  _validation.check_interval("momentum", momentum, 0.0, 1.0, high_open=True)

  def build(on: dict[str, bool]):
    real_rmsprop = _rmsprop.rmsprop(
        learning_rate=lr,
        decay=alpha,
        eps=eps,
        initial_scale=0.0,
        eps_in_sqrt=False,
        centered=centered,
        momentum=momentum if on["momentum"] else None,
        lr_in_momentum=False,
        coupled_weight_decay=weight_decay if on["weight_decay"] else None,
        maximize=maximize,
    )
    return _split_real_and_imaginary(real_rmsprop)

  # Like PyTorch, no buffer for momentum 0 and no decay for weight_decay 0,
  # decided by init also for injected (array) values.
  return _switches.init_decides(
      build,
      momentum=momentum,
      weight_decay=weight_decay,
  )


def _split_real_and_imaginary(
    inner: optax.GradientTransformation,
) -> optax.GradientTransformation:
  """``optax.contrib.split_real_and_imaginary(inner)`` (same state), where a
  None gradient of a complex param (given ``params``) is split too: into a
  (None, None) pair, matching the state's (real, imaginary) pair, and back
  into None. optax keeps it one None leaf: a tree mismatch in ``inner``."""
  tx = optax.contrib.split_real_and_imaginary(inner)
  pair = _optax_compat.SplitRealAndImaginaryArrays
  is_pair = lambda x: isinstance(x, pair)
  is_none = lambda x: x is None

  def split(x):
    return pair(x.real, x.imag) if jnp.iscomplexobj(x) else x

  def split_gradient(g, p):
    if g is None:
      return pair(None, None) if jnp.iscomplexobj(p) else None
    return split(g)

  def merge(u):
    if not is_pair(u):
      return u
    return None if u.real is None else u.real + u.imaginary * 1j

  def update_fn(updates, state, params=None):
    if params is None or not any(
        g is None for g in jax.tree.leaves(updates, is_leaf=is_none)
    ):
      return tx.update(updates, state, params)
    updates = jax.tree.map(split_gradient, updates, params, is_leaf=is_none)
    updates, inner_state = inner.update(
        updates, state.inner_state, jax.tree.map(split, params)
    )
    updates = jax.tree.map(merge, updates, is_leaf=is_pair)
    return updates, type(state)(inner_state)

  return optax.GradientTransformation(tx.init, update_fn)


def _one_element_lr(lr: Any) -> Any:
  """``lr`` with a one-element array or tensor made a scalar (PyTorch's rule).

  Raises:
    ValueError: for an array or tensor with more than one element, with
      PyTorch's message.
  """
  if callable(lr) or isinstance(lr, (int, float)):
    return lr
  if hasattr(lr, "detach"):  # a torch.Tensor, as a copied call passes it
    lr = lr.detach().cpu().numpy()
  size = int(np.prod(jnp.shape(lr)))  # static even for a traced array
  if size != 1:
    raise ValueError(
        f"Tensor lr must be 1-element, got shape {tuple(jnp.shape(lr))}"
    )
  if isinstance(lr, jax.Array):
    return jnp.reshape(lr, ())
  return np.reshape(np.asarray(lr), ())
