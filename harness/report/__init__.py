"""Reading results: comparisons and their statistics, the table, plots, paper tables, the
calibration table. Imports engine and core (and paper layouts from config); never the runner or
Hydra composition.
"""
