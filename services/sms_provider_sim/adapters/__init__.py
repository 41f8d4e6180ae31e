"""The simulator's I/O: in-memory state, the state file, signed webhook delivery."""
