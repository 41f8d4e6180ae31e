"""Signed webhook delivery with retries, as real providers do it (duplicates included).

A delivery is retried when the receiver answers non-2xx or cannot be reached: up to
`MAX_ATTEMPTS` attempts, waiting 0.5 s, 1 s, 2 s, ... between them. The body is identical
on every attempt; the timestamp and signature are fresh each time. Every request is signed with
the account's own webhook secret and names the account (`X-Sim-Account`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Literal

import httpx

from services.sms_provider_sim.dialects.base import Outgoing
from services.sms_provider_sim.domain.models import WebhookAttempt, now_iso
from shared.sms_signing import ACCOUNT_HEADER, signature_headers

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
FIRST_BACKOFF_SECONDS = 0.5
ATTEMPT_TIMEOUT_SECONDS = 5.0
MAX_IN_FLIGHT = 32
"""Webhook requests in flight at once, as a provider's delivery workers would be. Unbounded,
a receiver slower than the sends left thousands of requests queued inside httpx's connection
pool, which looks through its whole queue on every request it starts or ends: at 1,000 sites
the simulator spent nine tenths of its CPU there and became the slowest part of a load test."""


def encode(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class WebhookSender:
    """POSTs signed JSON to receivers and records every attempt in `attempts`."""

    def __init__(
        self,
        attempts: list[WebhookAttempt],
        max_attempts: int = MAX_ATTEMPTS,
        first_backoff: float = FIRST_BACKOFF_SECONDS,
    ) -> None:
        self.attempts = attempts
        self.max_attempts = max_attempts
        self.first_backoff = first_backoff
        self._client: httpx.AsyncClient | None = None
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def start(self) -> None:
        """Open the HTTP client."""
        # trust_env=False: a developer's HTTP(S)_PROXY must not capture localhost receivers.
        self._client = httpx.AsyncClient(
            timeout=ATTEMPT_TIMEOUT_SECONDS,
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
            ),
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def deliver(
        self,
        *,
        kind: Literal["receipt", "inbound"],
        event_id: str,
        reference: str | None,
        account: str,
        url: str,
        secret: str,
        payload: dict[str, Any],
        render: Callable[[], tuple[bytes, dict[str, str]]] | None = None,
    ) -> bool:
        """Deliver until a 2xx or the attempts run out; True when a 2xx was received.

        `render`: a provider dialect's body and headers, made afresh for every attempt (so
        signed dialects sign each one), instead of the simulator's own signed JSON."""
        if self._client is None:
            raise RuntimeError("WebhookSender.start() was not called")
        body = encode(payload)
        for attempt in range(1, self.max_attempts + 1):
            if render is not None:
                body, dialect_headers = render()
                headers = {"User-Agent": "stagger-sms-sim/1", **dialect_headers}
            else:
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "stagger-sms-sim/1",
                    "X-Sim-Attempt": str(attempt),
                    ACCOUNT_HEADER: account,
                    **signature_headers(secret, body),
                }
            status: int | None = None
            error: str | None = None
            try:
                async with self._in_flight:
                    response = await self._client.post(url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            ok = status is not None and 200 <= status < 300
            self.attempts.append(
                WebhookAttempt(
                    type=kind,
                    event_id=event_id,
                    reference=reference,
                    account=account,
                    url=url,
                    attempt=attempt,
                    at=now_iso(),
                    status_code=status,
                    error=error,
                    ok=ok,
                )
            )
            if ok:
                return True
            if attempt < self.max_attempts:
                await asyncio.sleep(self.first_backoff * 2 ** (attempt - 1))
        log.warning(
            "webhook abandoned",
            extra={"type": kind, "event_id": event_id, "attempts": self.max_attempts},
        )
        return False

    async def deliver_outgoing(
        self, kind: Literal["receipt", "inbound"], event_id: str, account: str, out: Outgoing | None
    ) -> bool:
        """Deliver a dialect's webhook (nothing when the dialect has none for it)."""
        if out is None:
            return False
        return await self.deliver(
            kind=kind,
            event_id=event_id,
            reference=out.reference,
            account=account,
            url=out.url,
            secret="",
            payload={},
            render=out.render,
        )
