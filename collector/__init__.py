"""labscope collector: sockets, module loader, routing and store."""
