"""Aggregator modules that only labscope bench loads (with --modules-dir)."""
