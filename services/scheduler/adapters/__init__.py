"""The scheduler's I/O: the clock, the site table, tick publishing, metrics."""
