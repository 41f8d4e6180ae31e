"""Provider dialects of the simulator: one module per real provider's wire format.

An account speaks one dialect (`PUT /v1/admin/accounts/{name}` with `"dialect": …`); its
routes live under `/<dialect>/…` and its receipts and replies take that provider's shape.
"""

from __future__ import annotations

from services.sms_provider_sim.dialects import (
    clicksend,
    esendex,
    kudosity,
    messagemedia,
    tnz,
    vonage,
)
from services.sms_provider_sim.dialects.base import Dialect

ALL: tuple[Dialect, ...] = (
    clicksend.DIALECT,
    vonage.DIALECT,
    messagemedia.DIALECT,
    kudosity.DIALECT,
    esendex.DIALECT,
    tnz.DIALECT,
)


def dialect_registry() -> dict[str, Dialect]:
    """Every dialect by name."""
    return {d.name: d for d in ALL}
