"""Models chosen by name (``model=NAME``): plain ``nn.Module``s that know nothing of Lightning
or Hydra, and ``build.py``, which assembles one from config."""
