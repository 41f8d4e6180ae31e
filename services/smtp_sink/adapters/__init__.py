"""The SMTP sink's I/O beyond its socket: the IMAP Sent folder."""
