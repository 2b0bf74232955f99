"""Drop-in distributions for ``labscope bench`` (loaded with --distributions-dir, not imported)."""
