"""``hydra/launcher=gpus``: a sweep's jobs spread over the machine's GPUs, each in a fresh
process that sees only its own devices (see gpus_launcher.py)."""
