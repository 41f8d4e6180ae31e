"""Pure rules of the audit service: the hash chain. No I/O."""
