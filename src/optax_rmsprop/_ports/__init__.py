"""Framework ports: one place per framework for its preset, argument
translation, schedules and state conversion. Built on the core and tools."""
