"""Configuration: the Hydra schema built from the knobs (`schema`), composition and validation of
user overrides (`compose`), paper layouts (`paper`). Imports core, backends and engine.
"""
