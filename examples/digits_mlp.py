"""Digits MLP (Flax NNX) trained with optax_rmsprop, against SGD and Adam.

    python examples/digits_mlp.py            # lr sweep, seeds 0, 1, 2: ~98% test accuracy
    python examples/digits_mlp.py --quick    # CI mode: 3 epochs, one seed, no sweep

Deliberately thin, like flax's ``examples/mnist/main.py``: the training code
is in ``digits/train.py`` (``train_and_evaluate(config)``).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from digits import cli  # noqa: E402

if __name__ == "__main__":
  cli.main("mlp", default_epochs=30, quick_epochs=3)
