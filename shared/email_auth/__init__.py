"""OAuth 2.0 sign-in for email accounts (issue 19): token providers, the token cache and the
SASL XOAUTH2 / OAUTHBEARER strings SMTP and IMAP present."""
