"""Email gateway: SMTP sending at each account's pace, IMAP receiving."""
