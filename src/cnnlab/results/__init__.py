"""Results of runs and sweeps: the report, its statistics, what curves say, a sweep's progress."""
