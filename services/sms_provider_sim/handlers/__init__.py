"""The simulator's behaviour, independent of HTTP: sending, receipts, inbound, admin changes."""
