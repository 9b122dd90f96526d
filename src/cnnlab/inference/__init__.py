"""Using a trained checkpoint: test it (alone, as an ensemble, with TTA), classify image files,
export it."""
