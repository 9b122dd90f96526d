"""cnnlab: train and compare CNN image classifiers with Lightning and Hydra."""

# Importing the component packages fills the registry; sweep adds the config resolvers.
from cnnlab import data, layers, models, sweep  # noqa: F401
