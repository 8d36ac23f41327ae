"""Task families, one module each, registered by name (harness.registry.TASKS)."""
