"""`cautious`: mask the update coordinates that point uphill (C-Optim)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from optax_rmsprop._rules import trees as _trees
from optax_rmsprop._rules import validation as _validation


def _caution_leaf(u, g, floor):
  if u is None or jnp.size(u) == 0:
    return u
  # The update descends where u·g < 0 (optax adds u to the params);
  # Re(u·conj(g)) is the same test for complex leaves.
  product = u * jnp.conj(g).astype(u.dtype)
  mask = (jnp.real(product) < 0).astype(u.dtype)
  scale = jnp.maximum(jnp.mean(mask), jnp.asarray(floor, mask.dtype))
  return u * (mask / scale)


def cautious(
    inner: optax.GradientTransformation,
    floor: float = 1e-3,
) -> optax.GradientTransformationExtraArgs:
  r"""Zeroes the coordinates of ``inner``'s update that point uphill.

  Cautious optimizers (Liang et al., 2024): with :math:`g_t` the gradient
  this transformation receives and :math:`u_t` the update ``inner`` returns
  for it (optax's convention, :math:`p_t = p_{t-1} + u_t`), per leaf of
  :math:`n` elements:

  .. math::

    \begin{align*}
      \phi_t &\leftarrow \mathbb{1}[u_t \odot g_t < 0]
        && \text{the coordinates that descend} \\
      u'_t &\leftarrow u_t \odot \phi_t \,/\,
        \max\!\big(\tfrac{1}{n} \textstyle\sum_i \phi_{t,i},\ f\big)
    \end{align*}

  with :math:`f` = ``floor``. Dividing by the fraction kept restores the
  update's average size; the floor bounds the gain at :math:`1/f` when
  almost nothing is kept. This is timm's ``_apply_caution`` exactly: timm
  keeps ``m * g > 0`` for the buffer :math:`m` it *subtracts*, which is
  :math:`u \odot g < 0` for the update optax adds, and divides the 0/1 mask
  (in the update's dtype) by its mean clamped at ``min=1e-3``. The state is
  ``inner``'s, which is not masked: in timm, too, only the step is cautious
  and the momentum buffer keeps its unmasked value. A zero-size leaf passes
  through; a complex leaf keeps the coordinates with
  :math:`\operatorname{Re}(u \bar g) < 0`.

  Wrap the part of the chain whose direction should be checked: terms that
  belong to the gradient (coupled weight decay) go before the wrapper, terms
  that should not be masked (decoupled weight decay) after it, e.g.
  ``optax.chain(optax.add_decayed_weights(wd), cautious(optax.adam(lr)))``.
  A positive learning rate inside the wrapped part changes neither the signs
  nor the fraction kept.

  Args:
    inner: The transformation whose updates are masked.
    floor: :math:`f` > 0, lower bound of the kept fraction (timm: 1e-3).

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with ``inner``'s state.

  Raises:
    ValueError: if ``floor`` is not positive.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_rmsprop
    >>> tx = optax_rmsprop.tools.cautious(optax.sgd(1.0, momentum=0.9))
    >>> state = tx.init(jnp.zeros(4))
    >>> _, state = tx.update(jnp.array([1.0, 1.0, 1.0, 1.0]), state)
    >>> # momentum now points against the gradient in the last two coordinates
    >>> updates, state = tx.update(jnp.array([1.0, 1.0, -0.5, -0.5]), state)
    >>> updates  # -(1.9, 1.9, 0.4, 0.4): uphill masked, the rest x 2
    Array([-3.8, -3.8,  0. ,  0. ], dtype=float32)

  References:
    Liang, Chen, Liu & Liu, `Cautious Optimizers: Improving Training with One
    Line of Code <https://arxiv.org/abs/2411.16085>`_, 2024.

    timm, `timm/optim/rmsprop_tf.py
    <https://github.com/huggingface/pytorch-image-models/blob/main/timm/optim/rmsprop_tf.py>`_
    (``_apply_caution``; also in timm's AdamW, LAMB, Adafactor, ...).
  """
  _trees.check_transform("inner", inner)
  _validation.check_interval("floor", floor, 0.0)
  if _validation.known_at_least(-floor, 0.0):  # floor <= 0
    raise ValueError(f"floor must be > 0, got {floor!r}")
  inner = optax.with_extra_args_support(inner)

  def update_fn(updates, state, params=None, **extra_args):
    new_updates, state = inner.update(updates, state, params, **extra_args)
    new_updates = jax.tree.map(
        lambda u, g: _caution_leaf(u, g, floor),
        new_updates,
        updates,
        is_leaf=_trees.is_none,
    )
    return new_updates, state

  return optax.GradientTransformationExtraArgs(inner.init, update_fn)
