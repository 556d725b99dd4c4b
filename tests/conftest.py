"""Test-session setup shared by every test module."""

import os

# Keras 3 must pick its backend before it is first imported; JAX needs no TF.
os.environ.setdefault("KERAS_BACKEND", "jax")
# Tests run on CPU even where a GPU exists, so numbers match CI.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
