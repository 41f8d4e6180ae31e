"""How the audit service is reached: its HTTP API."""
