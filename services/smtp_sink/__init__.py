"""A local SMTP sink for `./dev up` and the tests: accepts mail, keeps it, never delivers it."""
