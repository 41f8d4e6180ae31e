"""The HTTP call patterns every provider adapter shares: a send that must tell "never left"
from "no answer", and a read (lookup, balance) that raises ProviderError when it cannot answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import httpx

from services.sms_gateway.adapters.providers.base import (
    NOT_SENT,
    ProviderError,
    SendReply,
    destination_refused_reply,
    refused_destination,
)
from shared.net.outbound import DestinationRefused
from shared.net.remote import http_detail, log_remote

log = logging.getLogger(__name__)


async def attempt(provider: str, call: Awaitable[httpx.Response]) -> httpx.Response | SendReply:
    """The provider's answer to a send, or the SendReply saying it never had one."""
    try:
        return await call
    except DestinationRefused as exc:
        return destination_refused_reply(exc)
    except NOT_SENT as exc:
        return SendReply("not_sent", detail=f"{provider} unreachable: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        # The request may have reached the provider: the gateway looks it up before anything.
        return SendReply("ambiguous", detail=f"no answer from {provider}: {type(exc).__name__}")


async def read(provider: str, call: Awaitable[httpx.Response]) -> httpx.Response:
    """A lookup/balance answer with a 2xx status; ProviderError otherwise (`credentials` set
    for 401/403)."""
    try:
        response = await call
    except DestinationRefused as exc:
        raise refused_destination(exc) from exc
    except httpx.HTTPError as exc:
        raise ProviderError(f"{provider} unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 300:
        log_remote(log, f"{provider} error answer", response.text, status=response.status_code)
        raise ProviderError(
            http_detail(provider, response.status_code),
            credentials=response.status_code in (401, 403),
        )
    return response


def retry_after(response: httpx.Response) -> float | None:
    """Seconds of a Retry-After header given in seconds (None when absent or a date)."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def number(value: object) -> float | None:
    """A price, balance or count that providers send as a number or a numeric string."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def whole(value: object) -> int | None:
    """A positive count (segments) sent as a number or a string."""
    found = number(value)
    return int(found) if found is not None and found >= 1 else None
