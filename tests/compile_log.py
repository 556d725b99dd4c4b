"""What JAX compiles while a function runs, from its ``log_compiles`` log."""

import logging

import jax


def compiles_during(fn) -> list[str]:
  """Runs ``fn()``; returns JAX's "Compiling ..." log messages meanwhile."""
  messages = []
  handler = logging.Handler()
  handler.emit = lambda record: messages.append(record.getMessage())
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles(True):
      fn()
  finally:
    logger.removeHandler(handler)
  return [m for m in messages if m.startswith("Compiling")]
