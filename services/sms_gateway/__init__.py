"""SMS gateway: provider adapters, credits, segments, opt-outs, replies."""
