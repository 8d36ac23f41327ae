"""sibench's engine: config -> cells -> run -> records, in parts that import only downwards:
core < backends < engine < config < runner, report < the commands (sweep, run, table, plot,
paper, calibrate, serve) at the top of this folder. It names no method or task.
"""
