"""The SMTP pool asks the engine's lease fence after its wait for a connection: a send whose
lease passed to another replica meanwhile never opens a connection, and outside an engine send
the fence is no check at all."""

from __future__ import annotations

from typing import Any

import pytest

from services.email_gateway.adapters.smtp import SmtpAccount, SmtpPool
from services.email_gateway.config import EmailGatewayConfig
from shared.dispatch.fence import LeaseLost, confirm_lease, reset_fence, set_fence


class _Guard:
    """Records connection attempts instead of making them."""

    def __init__(self) -> None:
        self.connects = 0

    async def connect(self, *args: Any, **kwargs: Any) -> Any:
        self.connects += 1
        raise OSError("no network in a unit test")


ACCOUNT = SmtpAccount(account="a1", host="smtp.example.com", port=587, security="none")


async def test_a_lost_lease_stops_the_send_before_any_connection() -> None:
    guard = _Guard()
    pool = SmtpPool(EmailGatewayConfig(), guard)  # type: ignore[arg-type]

    async def lost() -> None:
        raise LeaseLost("m1")

    token = set_fence(lost)
    try:
        with pytest.raises(LeaseLost):
            await pool.transaction(ACCOUNT, object())  # type: ignore[arg-type]
    finally:
        reset_fence(token)
    assert guard.connects == 0


async def test_outside_an_engine_send_the_fence_passes() -> None:
    await confirm_lease()
    guard = _Guard()
    pool = SmtpPool(EmailGatewayConfig(), guard)  # type: ignore[arg-type]
    outcome = await pool.transaction(ACCOUNT, object())  # type: ignore[arg-type]
    assert guard.connects == 1 and outcome.kind == "retry"
