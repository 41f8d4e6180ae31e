"""The unsubscribe endpoint behind every bulk email's List-Unsubscribe link: `/u/<token>`.

- `POST` with the body `List-Unsubscribe=One-Click` (RFC 8058; form-encoded or multipart) is a
  mail client's one-click unsubscribe: the address goes on the group's email suppression list
  (`record_opt_out`, how=`one_click`) and the answer is 200.
- `GET` (a person following the link, or a link scanner) changes nothing: it shows a short page
  whose button POSTs `confirm=yes` (how=`unsubscribe_link`). Scanners fetch links; they do not
  press buttons, so nobody is unsubscribed by their mail filter.
- No login, no cookie, no personal data asked (Spam Act s18, UEMA s11, RFC 8058): the token
  (see `shared.unsubscribe`) is the authority. An invalid token is a 404.

Wire it into the config service's app: `app.include_router(unsubscribe_router(...))`.
"""

from __future__ import annotations

import hashlib
import html
import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from nats.aio.client import Client

from shared.privacy.codec import PersonalData
from shared.suppression import record_opt_out
from shared.unsubscribe import Unsubscriber, UnsubscribeTokens

log = logging.getLogger(__name__)

ONE_CLICK = "One-Click"
HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
    "color:#222}button{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<meta name=robots content=noindex><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=HEADERS)


def masked(address: str) -> str:
    """j•••@example.com: enough for a person to recognise, not enough to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def opt_out_event_id(who: Unsubscriber, how: str, now: datetime) -> str:
    """Repeated clicks within the same minute store one event (JetStream de-duplication)."""
    raw = f"unsubscribe\x1f{who.group_id}\x1f{who.address.lower()}\x1f{how}\x1f"
    raw += now.strftime("%Y%m%d%H%M")
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def unsubscribe_router(
    nc: Client, tokens: UnsubscribeTokens, personal: PersonalData | None = None
) -> APIRouter:
    """`GET` and `POST /u/{token}`."""
    router = APIRouter(include_in_schema=False)

    def invalid() -> HTMLResponse:
        return _page(
            "Link not recognised",
            "<p>This unsubscribe link is not valid. If you copied it from an email, check that "
            "the whole link was copied, or reply to the email and ask to be removed.</p>",
            404,
        )

    @router.get("/u/{token}")
    async def confirm_page(token: str) -> HTMLResponse:
        who = tokens.check(token)
        if who is None:
            return invalid()
        return _page(
            "Unsubscribe from these emails?",
            f"<p>Stop emails like this one to <strong>{html.escape(masked(who.address))}"
            "</strong>.</p>"
            f'<form method=post action="/u/{html.escape(token)}">'
            "<input type=hidden name=confirm value=yes>"
            "<button type=submit>Unsubscribe</button></form>",
        )

    @router.post("/u/{token}")
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        who = tokens.check(token)
        if who is None:
            return invalid()
        try:
            form = await request.form()
        except Exception:
            form = None
        if form is not None and form.get("List-Unsubscribe") == ONE_CLICK:
            how = "one_click"
        elif form is not None and form.get("confirm") == "yes":
            how = "unsubscribe_link"
        else:
            return _page(
                "Nothing was changed",
                "<p>Use the button on the unsubscribe page, or your mail program's "
                "unsubscribe command.</p>",
                400,
            )
        now = datetime.now(UTC)
        try:
            await record_opt_out(
                nc,
                group_id=who.group_id,
                channel="email",
                recipient=who.address,
                how=how,  # type: ignore[arg-type]
                actor="recipient:unsubscribe-link",
                event_id=opt_out_event_id(who, how, now),
                # Sealed under the patient's own key, filed by their salted hash.
                personal=personal,
            )
        except Exception:
            log.exception("could not record an unsubscribe")
            return _page(
                "Please try again",
                "<p>We could not record your request just now. Please try again in a minute.</p>",
                503,
            )
        return _page(
            "You are unsubscribed",
            f"<p>No more emails like this will be sent to "
            f"<strong>{html.escape(masked(who.address))}</strong>.</p>",
        )

    return router
