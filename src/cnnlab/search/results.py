"""What a search leaves when it ends: the best trial's command line, the report, Optuna's plots."""

import shlex
import warnings
from pathlib import Path
from typing import Any

from cnnlab.errors import first_line
from cnnlab.search.loop import report, say
from cnnlab.search.space import Space, override

# Optuna's plots (optuna.visualization.matplotlib), by the file each is saved as.
PLOTS = {
    "history": "plot_optimization_history",  # each trial's value, and the best so far
    "importances": "plot_param_importances",  # fANOVA: empty before two trials finished
    "epochs": "plot_intermediate_values",  # val/acc by epoch: where the pruner stopped trials
}
LAUNCHER = ("hydra/launcher", "hydra.launcher")  # a sweep's business, not a single run's


def finish(study: Any, directory: Path, space: Space, fixed: list[str]) -> None:
    """Write the report and the plots; print the best trial and its command line."""
    report(directory, show=True)
    for name, why in plots(study, directory).items():
        say(f"no {name}.png: {why}")
    command = best_command(study, space, fixed)
    if command is None:
        say(f"no trial finished: nothing to rank (see {directory / 'report.md'})")
        return
    best = study.best_trial
    say(f"best: trial {best.number}, best val acc {best.value:.4f}; train it with:")
    print(command, flush=True)
    say(f"report and plots in {directory}")


def best_command(study: Any, space: Space, fixed: list[str]) -> str | None:
    """``python src/train.py <fixed> <the best trial's values>``; None before any trial finished."""
    try:
        best = study.best_trial
    except ValueError:  # no finished trial
        return None
    kept = [o for o in fixed if not o.lstrip("+~").startswith(LAUNCHER)]
    chosen = [override(key, best.params[key]) for key in space.params]
    return " ".join(shlex.quote(w) for w in ["python", "src/train.py", *kept, *chosen])


def plots(study: Any, directory: Path) -> dict[str, str]:
    """Save Optuna's plots as PNGs; for each that could not be drawn, why."""
    import matplotlib
    import optuna

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # why a plot is missing is said below
    missing = {}
    for name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
                warnings.simplefilter("ignore")
                axes = getattr(optuna_plots, function)(study)
            axes.figure.savefig(directory / f"{name}.png", dpi=120, bbox_inches="tight")
            plt.close(axes.figure)
        except Exception as err:
            missing[name] = first_line(err)
    return missing
