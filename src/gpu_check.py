"""The GPU check (benchmarks/gpu/__init__.py says what it measures), run from the source tree:
``python src/gpu_check.py --out DIR [--fashion DIR] [--wheels DIR] [--toy]``."""

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/
    wheels = argparse.ArgumentParser(add_help=False)
    wheels.add_argument("--wheels", type=Path)
    known, _ = wheels.parse_known_args()
    if known.wheels is not None:  # before cnnlab is imported: it imports Hydra
        from benchmarks.wheels import use_wheels

        use_wheels(known.wheels)
    from benchmarks.gpu import main

    sys.exit(main())
