"""Contracts every part uses: types and protocols, knobs, the registry, errors, paths, devices,
timeouts, quiet libraries. Imports nothing of the project.
"""
