"""One run's life: checks, assembly, training and record, resuming, signals, checkpoints, log."""
