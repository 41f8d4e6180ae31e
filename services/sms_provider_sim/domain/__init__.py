"""Pure rules of the simulator: stored records and request bodies, faults, rate limits, errors."""
