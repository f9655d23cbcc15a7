"""Background work: the loader (the only place files are read), jobs, the volume cache."""
