"""Pure rules of the config service: aggregates folded from events, command outcomes. No I/O."""
