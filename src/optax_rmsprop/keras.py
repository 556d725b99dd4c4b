"""Porting from Keras 3: an optimizer's variables to an optax state and back.

The preset itself is :func:`optax_rmsprop.keras_rmsprop`;
``from_keras_variables`` and ``to_keras_variables`` carry a Keras
``RMSprop``'s state (velocities, momentums, iterations, EMA, accumulators)
over in either direction.
"""

from optax_rmsprop._ports.keras.variables import (
    from_keras_variables as from_keras_variables,
)
from optax_rmsprop._ports.keras.variables import (
    to_keras_variables as to_keras_variables,
)

__all__ = ("from_keras_variables", "to_keras_variables")
