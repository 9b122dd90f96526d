"""The config's side of a run: composing it, other libraries' options, what decides a result."""
