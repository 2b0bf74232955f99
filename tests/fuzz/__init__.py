"""Property tests over every decoder that sees wire input, and the atheris harness (``make fuzz``)."""
