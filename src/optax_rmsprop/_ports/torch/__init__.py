"""PyTorch: ``torch.optim.RMSprop`` preset, param groups, schedulers and
state-dict conversion."""
