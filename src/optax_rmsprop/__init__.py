"""optax-rmsprop: RMSprop for JAX as composable Optax transformations."""

from optax_rmsprop._caution import cautious as cautious
from optax_rmsprop._inspect import rms_stats as rms_stats
from optax_rmsprop._keras_variables import (
    from_keras_variables as from_keras_variables,
)
from optax_rmsprop._keras_variables import (
    to_keras_variables as to_keras_variables,
)
from optax_rmsprop._lazy_rows import lazy_rows as lazy_rows
from optax_rmsprop._presets import dqn_rmsprop as dqn_rmsprop
from optax_rmsprop._presets import keras_rmsprop as keras_rmsprop
from optax_rmsprop._presets import tf1_rmsprop as tf1_rmsprop
from optax_rmsprop._presets import timm_rmsprop_tf as timm_rmsprop_tf
from optax_rmsprop._presets import torch_rmsprop as torch_rmsprop
from optax_rmsprop._rmsprop import rmsprop as rmsprop
from optax_rmsprop._scale_by_rms import ScaleByRmsState as ScaleByRmsState
from optax_rmsprop._scale_by_rms import (
    ScaleByRmsWithCountState as ScaleByRmsWithCountState,
)
from optax_rmsprop._scale_by_rms import (
    ScaleByRStdDevState as ScaleByRStdDevState,
)
from optax_rmsprop._scale_by_rms import (
    ScaleByRStdDevWithCountState as ScaleByRStdDevWithCountState,
)
from optax_rmsprop._scale_by_rms import scale_by_rms as scale_by_rms
from optax_rmsprop._sharding import init_sharded as init_sharded
from optax_rmsprop._sharding import state_shardings as state_shardings
from optax_rmsprop._stacked import StackLeavesState as StackLeavesState
from optax_rmsprop._stacked import stack_leaves as stack_leaves
from optax_rmsprop._torch_param_groups import (
    torch_param_groups as torch_param_groups,
)
from optax_rmsprop._torch_schedules import (
    torch_onecycle_schedules as torch_onecycle_schedules,
)
from optax_rmsprop._torch_state_dict import (
    from_torch_state_dict as from_torch_state_dict,
)
from optax_rmsprop._torch_state_dict import (
    to_torch_state_dict as to_torch_state_dict,
)
from optax_rmsprop._transforms import (
    add_decoupled_weight_decay as add_decoupled_weight_decay,
)
from optax_rmsprop._transforms import momentum as momentum

__version__ = "0.1.0"

__all__ = (
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "StackLeavesState",
    "add_decoupled_weight_decay",
    "cautious",
    "dqn_rmsprop",
    "from_keras_variables",
    "from_torch_state_dict",
    "init_sharded",
    "keras_rmsprop",
    "lazy_rows",
    "momentum",
    "rms_stats",
    "rmsprop",
    "scale_by_rms",
    "stack_leaves",
    "state_shardings",
    "tf1_rmsprop",
    "timm_rmsprop_tf",
    "to_keras_variables",
    "to_torch_state_dict",
    "torch_onecycle_schedules",
    "torch_param_groups",
    "torch_rmsprop",
)
