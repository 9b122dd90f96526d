"""``hydra/launcher=slurm``: submitit's SLURM launcher, checked, every job waited for."""
