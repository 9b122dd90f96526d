"""Using a trained checkpoint: test it (alone, as an ensemble, with TTA), classify, export."""
