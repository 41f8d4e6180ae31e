"""The config service's use cases: settings commands (`settings`) and accepting messages
(`submission`). Entrypoints and the CLI call these; they never touch NATS or SQL directly."""

from services.config.domain.outcomes import (
    AccountInUse,
    GatewayUnavailable,
    NotFound,
    Outcome,
    VersionMismatch,
    destinations,
    redact,
)
from services.config.handlers.settings import ConfigHandlers

__all__ = [
    "AccountInUse",
    "ConfigHandlers",
    "GatewayUnavailable",
    "NotFound",
    "Outcome",
    "VersionMismatch",
    "destinations",
    "redact",
]
