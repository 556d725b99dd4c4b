"""Training library for the digits examples (`digits_mlp.py`, `digits_cnn.py`)."""
