"""Tools around any optax optimizer: stacking and sharding, row-sparse and
cautious updates.

* ``stack_leaves`` runs a transformation on same-shaped leaves stacked into
  one array (fewer, larger kernels); ``StackLeavesState`` is its state.
* ``init_sharded`` and ``state_shardings`` place optimizer state like the
  params under ``jax.sharding``.
* ``lazy_rows`` updates only the rows a sparse gradient touched (TF1's
  sparse RMSprop); ``cautious`` masks steps whose sign disagrees with the
  gradient (timm's ``caution``).

Inspection, ``rms_stats``, is at the top level.
"""

from optax_rmsprop._tools.caution import cautious as cautious
from optax_rmsprop._tools.lazy_rows import lazy_rows as lazy_rows
from optax_rmsprop._tools.sharding import init_sharded as init_sharded
from optax_rmsprop._tools.sharding import state_shardings as state_shardings
from optax_rmsprop._tools.stacked import StackLeavesState as StackLeavesState
from optax_rmsprop._tools.stacked import stack_leaves as stack_leaves

__all__ = (
    "StackLeavesState",
    "cautious",
    "init_sharded",
    "lazy_rows",
    "stack_leaves",
    "state_shardings",
)
