"""Porting from PyTorch: param groups, schedulers and state dicts.

The preset itself is :func:`optax_rmsprop.torch_rmsprop`; these help move a
PyTorch run over: per-group hyperparameters (``torch_param_groups``),
``OneCycleLR`` as optax schedules (``torch_onecycle_schedules``), and an
``optimizer.state_dict()`` to an optax state and back
(``from_torch_state_dict``, ``to_torch_state_dict``).
"""

from optax_rmsprop._ports.torch.param_groups import (
    torch_param_groups as torch_param_groups,
)
from optax_rmsprop._ports.torch.schedules import (
    torch_onecycle_schedules as torch_onecycle_schedules,
)
from optax_rmsprop._ports.torch.state_dict import (
    from_torch_state_dict as from_torch_state_dict,
)
from optax_rmsprop._ports.torch.state_dict import (
    to_torch_state_dict as to_torch_state_dict,
)

__all__ = (
    "from_torch_state_dict",
    "to_torch_state_dict",
    "torch_onecycle_schedules",
    "torch_param_groups",
)
