"""Tools built on the core: inspection (``rms_stats`` and the state finder),
sharding and leaf stacking, the row-sparse and cautious wrappers."""
