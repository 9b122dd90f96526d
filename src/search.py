"""Search hyper-parameters with Optuna: `python src/search.py example hydra/launcher=gpus
data=fashion_mnist` (a space file from spaces/ or a path, then the overrides every trial
gets). `--dir DIR` alone goes on with a stopped search. README.md, "Search (Optuna)"."""

import argparse
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description="An Optuna search: each trial a training job through the chosen Hydra "
        "launcher, run as soon as a slot frees; the best trial's command line, report.md and "
        "Optuna's plots at the end."
    )
    parser.add_argument(
        "words",
        nargs="*",
        metavar="SPACE|OVERRIDE",
        help="a space file (spaces/NAME.yaml, or a path), then src/train.py overrides "
        "that every trial gets (hydra/launcher=gpus, data=..., trainer.max_epochs=...)",
    )
    parser.add_argument(
        "--dir", type=Path, help="the search's directory (default: a new logs/search/<time>)"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="trials at a time (default 1; under hydra/launcher=gpus, as many as the GPUs hold)",
    )
    parser.add_argument("--trials", type=int, metavar="N", help="instead of the file's n_trials")
    args = parser.parse_intermixed_args()
    from cnnlab.cli import one_line  # (imported here: a Ctrl-C meanwhile is said below)
    from cnnlab.search.command import search
    from cnnlab.search.loop import Stopped

    try:
        with one_line(program="search"):
            search(args.words, args.dir, args.parallel, args.trials)
    except Stopped as stop:
        print(f"search: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # before the search's own handler (which stops the trials) is set
        print("search: stopped by SIGINT", file=sys.stderr)
        sys.exit(130)
