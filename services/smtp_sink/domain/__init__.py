"""Pure rules of the SMTP sink: what it keeps of a message. No I/O."""
