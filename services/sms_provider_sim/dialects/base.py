"""What every provider dialect of the simulator shares.

A dialect is one real provider's wire format in front of the simulator's core: its routes
authenticate the provider's way, translate the request into the core's send (so every fault,
the rate limit, the credit check and the receipts apply unchanged), and translate the core's
answer back into the provider's shape. Its webhooks render receipts and replies the provider's
way (`Outgoing.render` is called afresh for each delivery attempt, so signed formats sign each).
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from services.sms_provider_sim.dialects.dropping import hold_then_drop
from services.sms_provider_sim.domain.models import Account, InboundMessage, Message

if TYPE_CHECKING:
    from services.sms_provider_sim.domain.outcome import SendOutcome
    from services.sms_provider_sim.handlers.simulator import Simulator


@dataclass(frozen=True)
class Outgoing:
    """One webhook a dialect wants delivered."""

    url: str
    reference: str | None
    render: Callable[[], tuple[bytes, dict[str, str]]]


@dataclass(frozen=True)
class Dialect:
    """A provider's routes and webhook shapes."""

    name: str
    router: APIRouter
    receipt: Callable[[Account, Message], Outgoing | None]
    # The reply, and the outbound message it answers when the patient replied to one.
    inbound: Callable[[Account, InboundMessage, Message | None], Outgoing | None]


def simulator(request: Request) -> Simulator:
    """The app's simulator."""
    sim: Simulator = request.app.state.simulator
    return sim


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic …` header."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def account_for(sim: Simulator, dialect: str, name: str | None, key: str | None) -> Account | None:
    """The account `name` if it speaks `dialect` and `key` is its API key."""
    account = sim.store.accounts.get(name or "")
    if account is None or account.dialect != dialect or not key:
        return None
    return account if hmac.compare_digest(account.api_key.encode(), key.encode()) else None


def refused(sim: Simulator, reference: str | None) -> None:
    """Record a send refused for its credentials (the admin list counts every attempt)."""
    submission = sim.record_submission(None, reference)
    submission.outcome, submission.status_code = "unauthorized", 401


async def submit(
    request: Request, account: Account, fields: Mapping[str, Any], *, idempotent: bool
) -> SendOutcome | None:
    """The core's answer to one translated send, or None when the fault injector dropped the
    connection after accepting (the caller returns anything: nobody receives it)."""
    sim = simulator(request)
    submission = sim.record_submission(account.name, fields.get("reference"))
    outcome = await sim.send(account, dict(fields), None, submission, idempotent=idempotent)
    if outcome.drop_after_seconds is not None:
        await hold_then_drop(request, outcome.drop_after_seconds, sim.stopping)
        return None
    return outcome


def form(params: Mapping[str, object]) -> tuple[bytes, dict[str, str]]:
    """A form-encoded webhook body."""
    body = urlencode({k: "" if v is None else str(v) for k, v in params.items()}).encode()
    return body, {"Content-Type": "application/x-www-form-urlencoded"}


def json_payload(data: object) -> tuple[bytes, dict[str, str]]:
    """A JSON webhook body."""
    return json.dumps(data, separators=(",", ":")).encode(), {"Content-Type": "application/json"}


def unix(iso: str) -> int:
    """Unix seconds of one of the simulator's ISO 8601 instants."""
    return int(datetime.fromisoformat(iso).timestamp())
