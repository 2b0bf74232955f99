"""labscope node agent: probes (psutil), outbox and the link to the collector."""
