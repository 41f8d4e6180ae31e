"""The email gateway's bus entrypoints: the engine's subscribers and the account requests.

- `stagger.rpc.email_gateway.account_status` — `{"site_id"}` → `{"ok", "last_error",
  "checked_at", …}`: what the site's SMTP account last did, for the settings page;
- `stagger.rpc.email_gateway.account_test` — `{"site_id"}` → the email Test (sign in to SMTP and
  IMAP, open the inbox and Sent folder, send nothing);
- `control.email.release_attachment.<site>` (the engine's control consumer) — release a
  quarantined attachment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faststream.nats import NatsBroker

from services.email_gateway.handlers.accounts import Accounts
from shared.bus import subjects
from shared.bus.rpc import BadRequest, raw_body, request_object
from shared.dispatch.engine import DispatchEngine
from shared.dispatch.subscribers import declare_subscribers
from shared.dispatch.tuning import EngineTuning

SITE_REQUEST = '{"site_id": "…"}'
"""The shape of the account endpoints' requests (named in the error a malformed one gets)."""


def declare(
    broker: NatsBroker,
    *,
    tuning: EngineTuning,
    engine: Callable[[], DispatchEngine[Any, Any]],
    accounts: Callable[[], Accounts],
) -> None:
    """Declare every subscriber; each hands its message to what `start()` built."""
    declare_subscribers(broker, channel="email", tuning=tuning, engine=engine)

    @broker.subscriber(
        subjects.rpc("email_gateway", "account_status"),
        queue="email_gateway",
        decoder=raw_body,
        title="email account status",
        description="Request/reply: {site_id} → {ok, last_error, checked_at, …}.",
    )
    async def account_status(body: bytes) -> dict[str, Any]:
        try:
            request = request_object(body, SITE_REQUEST)
        except BadRequest as exc:
            return {"ok": False, "last_error": str(exc)}
        return await accounts().status(str(request.get("site_id", "")))

    @broker.subscriber(
        subjects.rpc("email_gateway", "account_test"),
        queue="email_gateway",
        decoder=raw_body,
        title="email account test",
        description="Request/reply: {site_id} → the email Test: sign in to SMTP and IMAP, "
        "open the inbox and Sent folder, send nothing; {ok, smtp, imap, last_error}.",
    )
    async def account_test(body: bytes) -> dict[str, Any]:
        try:
            request = request_object(body, SITE_REQUEST)
        except BadRequest as exc:
            return {"ok": False, "last_error": str(exc)}
        return await accounts().test(str(request.get("site_id", "")))
