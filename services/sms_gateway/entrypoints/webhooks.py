"""Provider webhooks: delivery receipts and inbound replies, each provider's own format.

- `POST /webhooks/sms/simulator`: the simulator's receipts and replies (JSON, X-Sim-Signature,
  X-Sim-Account); only where the deployment enables the simulator, else 404;
- `POST /webhooks/sms/twilio`: Twilio inbound messages (form, X-Twilio-Signature);
- `POST /webhooks/sms/twilio/status`: Twilio status callbacks (`?ref=<our message id>`);
- `POST /webhooks/sms/<kind>/<account>/<token>/{receipt,inbound}`: providers that do not sign
  their webhooks (ClickSend, …), secured by the path (`path_webhooks`).

A body over `MAX_BODY_BYTES` is answered 413 without being read further. Every request is then
verified with the secrets of the account it names only (`trust`): a bad or missing signature is
answered 401 and nothing is stored; refusals are counted and logged at a bounded rate
(`refusals`). A signed body that cannot be understood is dead-lettered with the reason and answered
400. Receipts and replies are idempotent (providers retry): a repeat is answered 200 and
changes nothing. A receipt that arrives before its send was recorded is answered 503, so the
provider delivers it again a moment later.

Replies and receipts belong to the provider account they name (the simulator's `account`,
Twilio's `AccountSid`): a receipt settles only a message sent through that account, and a reply
goes to the group sending through it, or to the unrouted list (`replies`, `unrouted`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import parse_qsl

from nats.aio.client import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from services.sms_gateway.adapters import trust_store as trust
from services.sms_gateway.adapters.account_sites import AccountSites
from services.sms_gateway.adapters.providers import simulator, twilio
from services.sms_gateway.adapters.providers.base import BadWebhook, Inbound, Receipt
from services.sms_gateway.entrypoints import path_webhooks
from services.sms_gateway.entrypoints.refusals import count_too_large, refuse
from services.sms_gateway.handlers.receipt import ReceiptHandler
from services.sms_gateway.handlers.reply import ReplyHandler
from shared.bus.deadletter import DeadLetter, publish_dead_letters
from shared.domain.reply_attribution import Unrouted
from shared.runtime.body_limit import BodyLimit
from shared.sites import Site, SiteDirectory
from shared.sms_signing import ACCOUNT_HEADER

log = logging.getLogger(__name__)

CONSUMER = "sms-webhooks"
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_BODY_BYTES = 64 * 1024
"""Receipts and replies are a few hundred bytes; anything near this is not a provider's."""


class Webhooks:
    """The webhook routes of one gateway replica."""

    def __init__(
        self,
        *,
        base_url: str,
        tolerance_seconds: float,
        account_sites: AccountSites,
        sites: Callable[[], SiteDirectory],
        trust: Callable[[], trust.Trust],
        receipts: ReceiptHandler,
        replies: ReplyHandler,
        nc: Callable[[], Client],
    ) -> None:
        self._base_url = base_url
        self._tolerance = tolerance_seconds
        self._account_sites = account_sites
        # Made after `register` (trust needs the key ring, the engine makes its site
        # directory in `start`): read at use.
        self._sites = sites
        self._trust = trust
        self._receipts = receipts
        self._replies = replies
        self._nc = nc

    def app(self, *, simulator: bool) -> ASGIApp:
        """The ASGI app mounted beside the health routes; `simulator`: the deployment
        enables the simulator (otherwise its route does not exist)."""
        routes = [
            Route("/webhooks/sms/twilio", self.twilio_inbound, methods=["POST"]),
            Route("/webhooks/sms/twilio/status", self.twilio_status, methods=["POST"]),
        ]
        if simulator:
            routes.append(Route("/webhooks/sms/simulator", self.simulator, methods=["POST"]))
        routes += path_webhooks.routes(self)  # providers that do not sign (ClickSend, …)
        # Capped before any route reads it: a refused body is never parsed.
        return BodyLimit(Starlette(routes=routes), MAX_BODY_BYTES, on_refused=count_too_large)

    # --- simulator ------------------------------------------------------------------------

    async def simulator(self, request: Request) -> Response:
        """Signed JSON receipts and replies, verified with the named account's secrets."""
        body = await request.body()
        account = request.headers.get(ACCOUNT_HEADER, "").strip()
        if not account:
            return refuse(request, "no_account")
        sites = self._account_sites.sites(self._sites(), "simulator", account)
        if not sites:
            return refuse(request, "unknown_account")
        secrets = trust.simulator_secrets(self._trust().box, sites, account)
        if not secrets:
            return refuse(request, "no_secret")
        if not simulator.verify(secrets, request.headers, body, self._tolerance):
            return refuse(request, "bad_signature")
        try:
            parsed = simulator.parse(body)
        except BadWebhook as exc:
            return await self._malformed(request, body, str(exc))
        if parsed.account_id != account:
            # Signed by the header's account but claiming another inside: whoever holds one
            # account's secret must not speak for another.
            return refuse(request, "account_mismatch")
        if isinstance(parsed, Receipt):
            return await self._receipt(parsed, "simulator")
        return await self._inbound(request, body, parsed, "simulator", JSONResponse({}))

    # --- Twilio ---------------------------------------------------------------------------

    async def _twilio_form(self, request: Request) -> tuple[bytes, dict[str, str]] | Response:
        """The form if a tested Auth Token of its account signed it, else the refusal."""
        body = await request.body()
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return refuse(request, "bad_signature")
        form = dict(params)
        account_sid = form.get("AccountSid", "")
        sites = self._account_sites.sites(self._sites(), "twilio", account_sid)
        if not sites:
            return refuse(request, "unknown_account")
        tokens = await self._trust().twilio_tokens(sites)
        if not tokens:
            return refuse(request, "untested_account")
        url = self.public_url(request)
        header = request.headers.get(twilio.SIGNATURE_HEADER)
        if not any(twilio.verify(token, url, params, header) for token in tokens):
            return refuse(request, "bad_signature")
        return body, form

    def public_url(self, request: Request) -> str:
        """The URL the provider called (what Twilio signs)."""
        base = self._base_url
        query = request.url.query
        return f"{base}{request.url.path}" + (f"?{query}" if query else "")

    async def twilio_inbound(self, request: Request) -> Response:
        """An incoming SMS."""
        signed = await self._twilio_form(request)
        if isinstance(signed, Response):
            return signed
        body, form = signed
        try:
            parsed = twilio.parse_inbound(form)
        except BadWebhook as exc:
            return await self._malformed(request, body, str(exc))
        reply = Response(TWIML_EMPTY, media_type="text/xml")
        return await self._inbound(request, body, parsed, "twilio", reply)

    async def twilio_status(self, request: Request) -> Response:
        """A status callback of a message we sent."""
        signed = await self._twilio_form(request)
        if isinstance(signed, Response):
            return signed
        body, form = signed
        try:
            parsed = twilio.parse_status(form, request.query_params.get("ref"))
        except BadWebhook as exc:
            return await self._malformed(request, body, str(exc))
        return await self._receipt(parsed, "twilio")

    # --- shared ---------------------------------------------------------------------------

    # --- for the path-secured providers (`path_webhooks`) ----------------------------------

    @property
    def tolerance_seconds(self) -> float:
        """How old a signed webhook may be."""
        return self._tolerance

    def trust(self) -> trust.Trust:
        """The trust store (tested credentials, the key ring)."""
        return self._trust()

    def sites_on(self, provider: str, account_id: str) -> list[Site]:
        """The sites sending through one provider account."""
        return self._account_sites.sites(self._sites(), provider, account_id)

    async def receipt(self, receipt: Receipt, provider: str) -> Response:
        """Record a verified receipt."""
        return await self._receipt(receipt, provider)

    async def inbound(
        self, request: Request, body: bytes, inbound: Inbound, provider: str, ok: Response
    ) -> Response:
        """Handle a verified reply."""
        return await self._inbound(request, body, inbound, provider, ok)

    async def malformed(self, request: Request, body: bytes, reason: str) -> Response:
        """Dead-letter a verified body that cannot be understood."""
        return await self._malformed(request, body, reason)

    async def _receipt(self, receipt: Receipt, provider: str) -> Response:
        result = await self._receipts.handle(receipt, provider)
        if result.status == "recorded":
            return JSONResponse({"status": "recorded", "message_id": result.message_id})
        if result.status == "progress":
            return JSONResponse({"status": "progress ignored"})
        if result.status == "retry":
            # Its send is being recorded (or reconciled): ask the provider to come back.
            return JSONResponse({"status": "not yet sent here; retry"}, status_code=503)
        return JSONResponse({"status": "duplicate or unknown"})

    async def _inbound(
        self,
        request: Request,
        body: bytes,
        inbound: Inbound,
        provider: str,
        ok: Response,
    ) -> Response:
        kind = await self._replies.handle(inbound, provider)
        if isinstance(kind, Unrouted):
            # Kept in the unrouted list; the dead letter tells whoever watches the bus.
            await self._dead_letter(request, body, f"reply not attributed: {kind.reason}")
        return ok

    async def _malformed(self, request: Request, body: bytes, reason: str) -> Response:
        await self._dead_letter(request, body, reason)
        return JSONResponse({"error": "malformed webhook", "detail": reason}, status_code=400)

    async def _dead_letter(self, request: Request, body: bytes, reason: str) -> None:
        letter = DeadLetter.from_parts(
            consumer=CONSUMER,
            reason=reason,
            subject=request.url.path,
            data=body,
            headers=dict(request.headers),
        )
        await publish_dead_letters(self._nc(), [letter])
