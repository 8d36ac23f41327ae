"""Helpers shared by several methods (memory stores, embedders)."""
