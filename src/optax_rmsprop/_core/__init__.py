"""The core: RMS scaling, the optimizer, and the small transforms it chains.

Imports only the shared rules (``_rules``), never a port or a tool.
"""
