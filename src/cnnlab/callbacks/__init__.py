"""Lightning callbacks (``conf/callbacks``) that show what a run learned, in figures and logs."""
