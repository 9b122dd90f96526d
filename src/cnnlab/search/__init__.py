"""``python src/search.py``: an Optuna search, each trial a training job through the chosen Hydra
launcher. command.py runs space.py, plan.py, study.py, slots.py, trials.py, loop.py and
results.py in that order; pruning.py is the callback inside each trial's training."""
