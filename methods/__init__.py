"""Self-improvement methods, one module each, registered by name (harness.registry.METHODS)."""
