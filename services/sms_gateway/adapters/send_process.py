"""Provider send calls, made by a child process (`shared.runtime.call_process`).

The POST is the largest single cost of an SMS in the gateway; in a child with its own event
loop and HTTP client it runs on a second core beside the replica's queue and ledger work.
What crosses the pipe is the provider's spec (kind, account, opened secret, URL) and the
`Outbound`; back comes the adapter's `SendReply`. Lookups, balances and top-ups stay in the
replica (rare, and their answers feed its own state).

Nothing about delivery guarantees changes: the claim before the call and the ledger row after
the answer are written by the replica. A child that dies leaves every send it had not answered
`ambiguous` — the request may have reached the provider — so the gateway looks the message up
before any resend, exactly as after a timeout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from services.sms_gateway.adapters.providers import MAX_CACHED, ProviderSpec
from services.sms_gateway.adapters.providers.base import Outbound, Provider, SendReply
from shared.net.outbound import OutboundGuard, guarded_transport
from shared.runtime.call_process import CallProcess

# On top of the client's own timeout: only a stuck child waits this long.
_STUCK_SECONDS = 30.0


@dataclass(frozen=True)
class ClientOptions:
    """How an HTTP client for providers is set up (the replica's and the child's alike)."""

    timeout: float
    max_connections: int
    keepalive_expiry: float
    outbound_allow: str = ""  # STAGGER_OUTBOUND_ALLOW: judged again by the child itself

    def client(self) -> httpx.AsyncClient:
        """A client with these options (proxies from the environment ignored; every new
        connection judged against the outbound allow-list)."""
        limits = httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
            keepalive_expiry=self.keepalive_expiry,
        )
        return httpx.AsyncClient(
            timeout=self.timeout,
            transport=guarded_transport(
                OutboundGuard.parse(self.outbound_allow), limits=limits, trust_env=False
            ),
            trust_env=False,
        )


class SendProcess:
    """The replica's end: `send` has the child make one provider send."""

    def __init__(self, options: ClientOptions) -> None:
        self._calls: CallProcess[SendReply] = CallProcess(
            _sender,
            options,
            lost=lambda reason: SendReply("ambiguous", detail=reason),
            timeout=options.timeout + _STUCK_SECONDS,
            name="sms-sends",
        )

    @property
    def pid(self) -> int | None:
        """The child's process id, if one runs."""
        return self._calls.pid

    @property
    def started_count(self) -> int:
        """How many children were started (more than one: one died)."""
        return self._calls.started_count

    async def start(self) -> None:
        """Start the child now (otherwise the first send does)."""
        await self._calls.start()

    async def send(self, spec: ProviderSpec, message: Outbound) -> SendReply:
        """The provider's answer to one send, made by the child (never raises)."""
        return await self._calls.call(
            (spec, message), lambda reason: SendReply("not_sent", detail=reason)
        )

    async def close(self) -> None:
        """Stop the child (after the replica has let its sends finish)."""
        await self._calls.close()


class _Sender:
    """In the child: one adapter per provider spec, sharing one HTTP client."""

    def __init__(self, options: ClientOptions) -> None:
        self._client = options.client()
        self._providers: dict[ProviderSpec, Provider] = {}

    async def handle(self, request: Any) -> SendReply:
        spec, message = request
        provider = self._providers.get(spec)
        if provider is None:
            if len(self._providers) >= MAX_CACHED:
                self._providers.clear()
            provider = self._providers[spec] = spec.build(self._client)
        began_at = datetime.now(UTC)
        reply = await provider.send(message)  # adapters never raise for provider failures
        return dataclasses.replace(reply, began_at=began_at)

    async def close(self) -> None:
        await self._client.aclose()


async def _sender(options: ClientOptions) -> _Sender:
    return _Sender(options)
