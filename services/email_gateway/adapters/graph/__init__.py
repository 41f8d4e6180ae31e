"""Microsoft Graph as an email transport (issue 19): `sendMail` with the composed MIME, and
finding an uncertain send in Sent Items by its Message-ID."""
