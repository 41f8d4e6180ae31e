"""Webhooks of providers that do not sign them (ClickSend, …): secured by the path.

`POST /webhooks/sms/<kind>/<account>/<token>/receipt` and `…/inbound`, where `<account>` is the
provider account id as the site's settings name it and `<token>` is the site's webhook secret
(`sms.provider.webhook_secret`, at least `MIN_TOKEN_CHARS` random characters, typed into the
provider's dashboard as part of the URL). A request is accepted only when:

- the token equals the webhook secret of a site on (kind, account) **whose provider test
  succeeded with its current credentials** (a site can type anyone's account id, but cannot
  pass a test without that account's key), compared in constant time;
- and, when that site lists `sms.provider.webhook_sources`, the caller's address is in one of
  those networks.

Providers that also sign (Vonage) have the signature checked with the same secret (their
signature secret is the token), and the account named in the body must be the path's.

The account the receipt or reply is attributed to is the path's, so a receipt settles only a
message sent through that account and a reply goes to the groups sending through it. The
token is never logged: refusals log the path with the token cut out.
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import ipaddress
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.sms_gateway.adapters.providers import esendex
from services.sms_gateway.adapters.providers.base import BadWebhook, Receipt
from services.sms_gateway.adapters.providers.catalogue import PATH_SECURED, PathSecured
from services.sms_gateway.adapters.trust_store import _open
from services.sms_gateway.entrypoints.refusals import Reason, count
from shared.sites import Site

if TYPE_CHECKING:
    from services.sms_gateway.entrypoints.webhooks import Webhooks

MIN_TOKEN_CHARS = 24
PATH = "/webhooks/sms/{kind}/{account}/{token}/{event}"


def routes(hooks: Webhooks) -> list[Route]:
    """The routes of every path-secured provider."""
    return [Route(PATH, functools.partial(handle, hooks), methods=["POST"])]


def redacted(request: Request) -> str:
    """The request path without its token."""
    p = request.path_params
    return f"/webhooks/sms/{p.get('kind')}/{p.get('account')}/…/{p.get('event')}"


def _refuse(request: Request, reason: Reason) -> Response:
    count(reason, redacted(request), request.client.host if request.client else None)
    return JSONResponse({"error": "unknown webhook address"}, status_code=401)


def _allowed(site: Site, client: str | None) -> bool:
    networks = site.settings.sms.provider.webhook_sources
    if not networks:
        return True
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


def _fields(spec: PathSecured, body: bytes) -> dict[str, Any]:
    if spec.encoding == "xml":
        return esendex.flat(body)
    if spec.encoding == "json":
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise BadWebhook(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadWebhook("not a JSON object")
        return data
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        raise BadWebhook("the form is not UTF-8") from exc


async def handle(hooks: Webhooks, request: Request) -> Response:
    """One receipt or reply of a path-secured provider."""
    p = request.path_params
    kind, account, token, event = p["kind"], p["account"], p["token"], p["event"]
    spec = PATH_SECURED.get(kind)
    if spec is None or event not in ("receipt", "inbound"):
        return JSONResponse({"error": "not found"}, status_code=404)
    trust = hooks.trust()
    sites = hooks.sites_on(kind, account)
    if not sites:
        return _refuse(request, "unknown_account")
    holders = [
        s
        for s in await trust.tested_sites(sites)
        if (secret := _open(trust.box, s.settings.sms.provider.webhook_secret))
        and len(secret) >= MIN_TOKEN_CHARS
        and hmac.compare_digest(secret.encode(), token.encode())
    ]
    if not holders:
        return _refuse(request, "bad_token")
    client = request.client.host if request.client else None
    if not any(_allowed(s, client) for s in holders):
        return _refuse(request, "source_not_allowed")
    body = await request.body()
    try:
        fields = _fields(spec, body)
    except BadWebhook:
        return _refuse(request, "bad_signature")
    if spec.verify is not None:
        # Signed as well: the signature must be one of the token holders' (same secret).
        tolerance = hooks.tolerance_seconds
        secrets = [_open(trust.box, s.settings.sms.provider.webhook_secret) or "" for s in holders]
        if not any(spec.verify(fields, secret, tolerance) for secret in secrets):
            return _refuse(request, "bad_signature")
    if spec.account_field is not None and fields.get(spec.account_field) != account:
        return _refuse(request, "account_mismatch")
    try:
        parse = spec.receipt if event == "receipt" else spec.inbound
        parsed = parse(fields, account)
    except BadWebhook as exc:
        return await hooks.malformed(request, body, str(exc))
    if isinstance(parsed, Receipt):
        return await hooks.receipt(parsed, kind)
    if not parsed.to:
        # The provider does not say which of our numbers was texted (TNZ): the account's
        # sites' sender, when they share one (otherwise the reply stays unattributed).
        senders = {s.settings.sms.sender_id for s in sites if s.settings.sms.sender_id}
        if len(senders) == 1:
            parsed = dataclasses.replace(parsed, to=senders.pop())
    return await hooks.inbound(request, body, parsed, kind, JSONResponse({}))
