"""How mail reaches the sink: its SMTP listener."""
