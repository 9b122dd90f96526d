"""``hydra/launcher=gpus``: a sweep's jobs spread over the machine's GPUs (gpus_launcher.py)."""
