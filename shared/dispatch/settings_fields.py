"""Settings fields both gateways declare with the same meaning (each under its own prefix)."""

from __future__ import annotations

from typing import Any

from pydantic import Field


def retention_days_field() -> Any:
    """How long finished messages stay in a gateway's ledger."""
    return Field(
        default=90.0,
        ge=0,
        description="Finished messages (sent, failed, suppressed, cancelled, expired) older "
        "than this many days are deleted from this gateway's ledger, hourly; their events stay "
        "in DISPATCH and the audit trail. Receipts and replies arriving later are no longer "
        "matched to them. 0 keeps them for ever.",
    )
