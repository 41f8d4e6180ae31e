"""In-memory fakes of the gateways' ports, for handler unit tests (integration tests keep
running against real NATS, SQLite and PostgreSQL)."""
