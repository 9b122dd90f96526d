"""cnnlab: train and compare CNN image classifiers with Lightning and Hydra."""

# Importing the component packages fills the registry.
from cnnlab import data, layers, models  # noqa: F401
