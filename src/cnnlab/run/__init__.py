"""One run's life: its checks (checks.py), assembly (assemble.py), training and record
(train.py), resuming, pre-emption signals, checkpoints and its CSV log."""
