"""Asking an email gateway to run the email Test for a site (issue 19): the API's
`POST /api/v1/sites/{site}/email-test`, the wizard's Test button and `stagger email test`."""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from shared.bus import subjects

TIMEOUT_SECONDS = 45.0
"""SMTP and IMAP sign-ins run side by side, each bounded by the gateway's own timeouts."""


class EmailGatewayUnavailable(RuntimeError):
    """No email gateway answered."""


async def request_email_test(nc: Client, site_id: str) -> dict[str, Any]:
    """The gateway's answer: {ok, smtp: {ok, detail}, imap: {ok, detail, opened} | None,
    last_error}. Raises EmailGatewayUnavailable."""
    try:
        reply = await nc.request(
            subjects.rpc("email_gateway", "account_test"),
            json.dumps({"site_id": site_id}).encode(),
            timeout=TIMEOUT_SECONDS,
        )
    except (NoRespondersError, NatsTimeout) as exc:
        raise EmailGatewayUnavailable("no email gateway answered the test") from exc
    answer: dict[str, Any] = json.loads(reply.data)
    return {k: answer.get(k) for k in ("site_id", "ok", "smtp", "imap", "last_error")}
