"""``python src/search.py``: an Optuna search over a space file, each trial a training job
through the chosen Hydra launcher, several at a time, resumable.

space.py (the space file) → plan.py (the command line, checked) → study.py (the directory's
journal and lock) → slots.py (where trials run side by side) → trials.py (one trial's process
and outcome) → loop.py (ask, start, tell) → results.py (best command line, report, plots);
command.py runs them in that order. pruning.py is the callback inside each trial's training.
"""
