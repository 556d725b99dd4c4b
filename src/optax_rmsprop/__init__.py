"""optax-rmsprop: RMSprop for JAX as composable Optax transformations.

The top level holds the core (``rmsprop``, ``scale_by_rms`` and the small
transforms it chains), the framework presets and ``rms_stats``. Porting
helpers live in ``optax_rmsprop.torch`` and ``optax_rmsprop.keras``; the
stacking, sharding, row-sparse and cautious wrappers in
``optax_rmsprop.tools``.
"""

from optax_rmsprop import keras as keras
from optax_rmsprop import tools as tools
from optax_rmsprop import torch as torch
from optax_rmsprop._core.rmsprop import rmsprop as rmsprop
from optax_rmsprop._core.scale_by_rms import scale_by_rms as scale_by_rms
from optax_rmsprop._core.transforms import (
    add_decoupled_weight_decay as add_decoupled_weight_decay,
)
from optax_rmsprop._core.transforms import momentum as momentum
from optax_rmsprop._ports.dqn import dqn_rmsprop as dqn_rmsprop
from optax_rmsprop._ports.keras.preset import keras_rmsprop as keras_rmsprop
from optax_rmsprop._ports.tf1 import tf1_rmsprop as tf1_rmsprop
from optax_rmsprop._ports.timm import timm_rmsprop_tf as timm_rmsprop_tf
from optax_rmsprop._ports.torch.preset import torch_rmsprop as torch_rmsprop
from optax_rmsprop._tools.inspect import rms_stats as rms_stats

__version__ = "0.1.0"

__all__ = (
    "add_decoupled_weight_decay",
    "dqn_rmsprop",
    "keras_rmsprop",
    "momentum",
    "rms_stats",
    "rmsprop",
    "scale_by_rms",
    "tf1_rmsprop",
    "timm_rmsprop_tf",
    "torch_rmsprop",
)
