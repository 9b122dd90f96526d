"""Models by name (``model=NAME``): plain ``nn.Module``s that know nothing of Lightning or Hydra."""
