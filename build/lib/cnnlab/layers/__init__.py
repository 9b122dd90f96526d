"""Building blocks chosen by name: activations, norms and initialisations."""

from cnnlab.layers import activations, inits, norms  # noqa: F401
