"""Presets that reproduce other frameworks' RMSprop, step for step.

Each takes the framework's own argument names and defaults and returns an
optax chain of the core pieces (:func:`rmsprop` and what it chains); see
``docs/porting.md`` for the differences between the frameworks and the
deviations measured against each.
"""

from optax_rmsprop._presets_dqn import dqn_rmsprop
from optax_rmsprop._presets_keras import keras_rmsprop
from optax_rmsprop._presets_tf1 import tf1_rmsprop
from optax_rmsprop._presets_timm import timm_rmsprop_tf
from optax_rmsprop._presets_torch import torch_rmsprop

__all__ = (
    "dqn_rmsprop",
    "keras_rmsprop",
    "tf1_rmsprop",
    "timm_rmsprop_tf",
    "torch_rmsprop",
)
