"""The public API: the top level's ``__all__`` and each public namespace's.

Used by the tests that walk every public name and by docs/conf.py (which
writes a page for each), so that a name added anywhere public is covered.
"""

from __future__ import annotations

import inspect

import optax_rmsprop


def namespaces() -> list:
  """The public submodules (``optax_rmsprop.torch``, ...): those the package
  imports that have an ``__all__``."""
  return sorted(
      (
          m
          for m in vars(optax_rmsprop).values()
          if inspect.ismodule(m)
          and m.__name__.startswith("optax_rmsprop.")
          and hasattr(m, "__all__")
      ),
      key=lambda m: m.__name__,
  )


def public_names() -> list[str]:
  """Every public name, qualified below ``optax_rmsprop`` ("torch.x")."""
  names = list(optax_rmsprop.__all__)
  for module in namespaces():
    prefix = module.__name__.removeprefix("optax_rmsprop.")
    names += [f"{prefix}.{name}" for name in module.__all__]
  return names


def resolve(qualified: str):
  """``optax_rmsprop.<qualified>``."""
  obj = optax_rmsprop
  for part in qualified.split("."):
    obj = getattr(obj, part)
  return obj
