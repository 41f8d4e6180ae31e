"""The SMTP sink's use case: accept, refuse or keep each message."""
