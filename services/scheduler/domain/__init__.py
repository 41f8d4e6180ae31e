"""Pure scheduling rules: plans, open time, slot cursors. No I/O."""
