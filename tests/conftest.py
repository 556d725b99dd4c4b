"""Test-session setup shared by every test module."""

import os

# Keras 3 must pick its backend before it is first imported; JAX needs no TF.
os.environ.setdefault("KERAS_BACKEND", "jax")
# Tests run on CPU even where a GPU exists, so numbers match CI.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The plugin that swaps optax's rmsprop for ours runs only in the subprocess
# of test_optax_own_tests.py; importing it here (doctest collection) would
# patch optax in this process and make every comparison with optax vacuous.
collect_ignore_glob = ["optax_suite/*"]
