"""The results table of sweeps: python src/report.py logs/train/multiruns/<time> [more dirs]."""

import argparse
import sys
from pathlib import Path

from cnnlab.errors import ConfigError
from cnnlab.report import METRICS, write_report


def main() -> None:
    parser = argparse.ArgumentParser(
        description="One row per configuration (repeated seeds as mean ± std), printed and "
        "written as report.md, report.csv and curves.png."
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories")
    parser.add_argument("--out", type=Path, help="where to write (default: the first dir)")
    parser.add_argument("--sort", choices=list(METRICS), default="best_val_acc")
    args = parser.parse_args()
    try:
        out = write_report(args.dirs, args.out, args.sort)
    except ConfigError as err:  # a user mistake: one line, no traceback
        print(f"report: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"written to {out}/report.md, report.csv, curves.png")


if __name__ == "__main__":
    main()
