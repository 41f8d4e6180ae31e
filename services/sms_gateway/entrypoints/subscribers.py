"""The gateway's own bus subscribers (the engine declares its intake, ticks and commands)."""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker

from services.sms_gateway.handlers.provider_test import ProviderTestHandler, answer
from shared.bus import subjects
from shared.bus.rpc import BadRequest, raw_body, request_object


def register(broker: NatsBroker, provider_test: ProviderTestHandler) -> None:
    """Declare the provider-test request/reply endpoint (before the broker starts)."""

    @broker.subscriber(
        subjects.rpc("sms_gateway", "provider_test"),
        queue="sms_gateway",
        decoder=raw_body,
        title="sms-gateway provider test",
        description="Request/reply: {site_id, group_id, actor} → {ok, balance, unit, "
        "error, provider}; one replica answers.",
    )
    async def on_provider_test(body: bytes) -> dict[str, Any]:
        try:
            request = request_object(body, '{"site_id": "…", "group_id": "…"}')
        except BadRequest as exc:
            return answer(False, error=str(exc))
        return await provider_test.handle(request)
