"""Lightning callbacks that show what a run learned, selected in ``conf/callbacks``: each one
writes its figure into the run directory's ``figures/`` and hands it to the TensorBoard and
W&B loggers when they are on (``cnnlab.callbacks.publish``)."""
