"""Built-in aggregator modules, one file each."""
