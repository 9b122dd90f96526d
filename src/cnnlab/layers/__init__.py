"""Building blocks chosen by name: activations, norms and initialisations."""
