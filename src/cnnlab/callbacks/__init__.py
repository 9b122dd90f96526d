"""Lightning callbacks that show what a run learned, selected in ``conf/callbacks``: each writes
its figure into the run's ``figures/`` and its logs (``cnnlab.callbacks.publish``)."""
