"""Shared rules: numerics (dtypes, saturation), validation, trees, optax
compatibility. Import nothing else from this package."""
