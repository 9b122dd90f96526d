"""cnnlab: train and compare CNN image classifiers with Lightning and Hydra."""

from pathlib import Path

# The config tree. cnnlab is installed from its source tree (pip install -e), so the configs
# sit beside src/, where the scripts, the evaluation and the benchmarks all compose them.
CONF = Path(__file__).resolve().parents[2] / "conf"

# The config resolvers (${cnnlab.new_dir:...}); the components load at the registry's first lookup
from cnnlab.config import job  # noqa: E402, F401
