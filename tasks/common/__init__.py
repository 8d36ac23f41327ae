"""Helpers shared by task modules: the reasoning-gym adapter and answer extraction."""
