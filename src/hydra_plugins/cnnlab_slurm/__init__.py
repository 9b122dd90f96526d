"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, checked against the
cluster before it submits and waiting for every job (see slurm_launcher.py)."""
