"""cnnlab: train and compare CNN image classifiers with Lightning and Hydra."""

# The config resolvers (${cnnlab.new_dir:...}). The components (models, data sets, ...) are
# imported by cnnlab.registry at the first lookup, so that importing cnnlab stays light.
from cnnlab import sweep  # noqa: F401
