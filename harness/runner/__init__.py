"""Many cells: plan and execute a sweep, launchers (local, Ray cluster), the worker host, loggers,
signals, paper runs. Imports config, engine, backends and core; never report.
"""
