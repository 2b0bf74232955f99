"""labscope clients: the client library, query/watch commands, terminal and Qt views."""
