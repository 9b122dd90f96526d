"""``--wheels DIR`` of the GPU check: install those of the wheels in DIR whose packages this
Python lacks (Hydra, kornia, captum, ...: what a GPU image with torch and Lightning may not have)
into a folder of their own, for this process and every job it starts; the Python's own packages
stay as they are. Imports nothing of cnnlab's: it runs before cnnlab can be imported.
"""

import atexit
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def use_wheels(folder: Path) -> None:
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        sys.exit(f"cnnlab: error: --wheels {folder}: no .whl files there")
    missing = [str(w) for w in wheels if not _installed(w.name.split("-")[0])]
    if not missing:
        return
    site = tempfile.mkdtemp(prefix="cnnlab-wheels-")
    atexit.register(shutil.rmtree, site, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    done = subprocess.run([*pip, "--target", site, *missing], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        sys.exit(f"cnnlab: error: --wheels {folder}: {last}")
    sys.path.insert(0, site)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False
