"""Results of runs and sweeps: the report's rows, table and curves, their statistics, what a
run's curves say, and a sweep's progress."""
