"""The results table of sweeps: python src/report.py logs/train/multiruns/<time> [more dirs]."""

import argparse
import json
from pathlib import Path

from cnnlab.cli import one_line
from cnnlab.errors import ConfigError
from cnnlab.options import read
from cnnlab.results.diagnosis import Thresholds
from cnnlab.results.report import METRICS, Options, write_report


def main() -> None:
    parser = argparse.ArgumentParser(
        description="One row per recipe (runs that differ only in their seed pooled: mean ± std, "
        "95%% interval, compared with the best row), printed and written as report.md, "
        "report.csv and curves.png."
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories")
    parser.add_argument("--out", type=Path, help="where to write (default: the first dir)")
    parser.add_argument(
        "--sort", choices=list(METRICS), default=Options.sort, help="rank and compare by"
    )
    parser.add_argument(
        "--alpha", type=_level, default=0.05, help="the tests' level (default 0.05: 95%% intervals)"
    )
    parser.add_argument(
        "--min-seeds",
        type=_seeds,
        metavar="K",
        help="add the seeds per row each comparison with the best needs to show its difference "
        "(80%% power), up to K",
    )
    parser.add_argument(
        "--diagnose",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a threshold of the curves' rules, as train.yaml's diagnose: (overfit_gap=0.05)",
    )
    args = parser.parse_args()
    with one_line(program="report"):
        limits = read(Thresholds, dict(_pair(p) for p in args.diagnose), "diagnose")
        options = Options(args.sort, args.alpha, args.min_seeds, limits)
        out = write_report(args.dirs, args.out, options)
    print(f"written to {out}/report.md, report.csv, curves.png")


def _pair(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--diagnose {text}: expected KEY=VALUE, e.g. overfit_gap=0.05")
    try:
        return key, json.loads(value)  # a number (the thresholds are numbers)
    except ValueError:
        return key, value  # refused by the declaration, naming it


def _level(text: str) -> float:
    try:
        alpha = float(text)
    except ValueError:
        alpha = -1.0
    if not 0 < alpha < 0.5:
        raise argparse.ArgumentTypeError(f"{text}: expected a number between 0 and 0.5")
    return alpha


def _seeds(text: str) -> int:
    if not text.isdigit() or not 2 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"{text}: expected a whole number from 2 to 10000")
    return int(text)


if __name__ == "__main__":
    main()
