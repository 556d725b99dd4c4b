"""Keras 3: ``keras.optimizers.RMSprop`` preset, its transforms (clipping,
EMA, accumulation) and optimizer-variable conversion."""
