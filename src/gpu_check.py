"""The GPU check in one command (cnnlab/gpucheck.py says what it measures):

    python src/gpu_check.py --out DIR [--fashion DIR] [--wheels DIR] [--toy]

It runs from the source tree, cnnlab installed or not. ``--wheels DIR`` first installs the
wheels in DIR (Hydra, kornia, captum, ...: what a GPU image with torch and Lightning lacks) into
a folder of their own, for this process and every job it starts, leaving the Python's own
packages as they are.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def use_wheels(folder: Path) -> None:
    wheels = sorted(str(p) for p in folder.glob("*.whl"))
    if not wheels:
        sys.exit(f"cnnlab: error: --wheels {folder}: no .whl files there")
    site = tempfile.mkdtemp(prefix="cnnlab-wheels-")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*pip, "--target", site, *wheels], check=True)
    sys.path.insert(0, site)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))


if __name__ == "__main__":
    if "--wheels" in sys.argv[1:-1]:  # before cnnlab is imported: it imports Hydra
        use_wheels(Path(sys.argv[sys.argv.index("--wheels") + 1]))
    from cnnlab.gpucheck import main

    sys.exit(main())
