"""Data sets chosen by name, and the DataModule that serves them."""
