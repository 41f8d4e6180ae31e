"""One-click unsubscribe (RFC 8058): the link in List-Unsubscribe, the endpoint the config
service serves, and the gateway suppressing the recipient's mail afterwards."""

from __future__ import annotations

import base64

import httpx
from fastapi import FastAPI

from services.config.entrypoints.unsubscribe import unsubscribe_router
from shared.secrets import generate_key
from shared.unsubscribe import UnsubscribeTokens
from tests.integration.email_gateway.conftest import (
    EmailHarness,
    email_settings,
    queued,
    terminal_of,
)
from tests.support.waiting import wait_until

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def test_tokens_name_one_recipient_and_cannot_be_forged() -> None:
    old, new = generate_key().encode(), generate_key().encode()
    tokens = UnsubscribeTokens([old])
    token = tokens.make("g-smile", "Jo.Bloggs@example.org")
    assert token == tokens.make("g-smile", "Jo.Bloggs@example.org"), "the same link every time"
    assert token != tokens.make("g-other", "Jo.Bloggs@example.org")
    who = tokens.check(token)
    assert who is not None and (who.group_id, who.address) == ("g-smile", "Jo.Bloggs@example.org")
    assert b"Bloggs" not in base64.urlsafe_b64decode(token + "==="), "the address is encrypted"
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert tokens.check(tampered) is None
    assert tokens.check("not-a-token") is None
    assert UnsubscribeTokens([generate_key().encode()]).check(token) is None, "another key"
    # After rotation (new key first, old key kept) old links still work; new ones use the new key.
    rotated = UnsubscribeTokens([new, old])
    assert rotated.check(token) == who
    assert UnsubscribeTokens([old]).check(rotated.make("g-smile", "x@example.org")) is None


async def test_one_click_unsubscribes_and_the_gateway_suppresses_queued_mail(
    email: EmailHarness, smtp_servers
) -> None:
    server = smtp_servers()
    site = await email.make_site(email_settings(server.port, mode="manual"))
    tokens = UnsubscribeTokens([email.key.encode()])
    app = FastAPI()
    app.include_router(unsubscribe_router(email.nc, tokens))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://x")
    async with email.gateway() as gw, client:
        leaving = await email.submit(site, 2, category="recall", to=lambda i: "jo@example.org")
        staying = await email.submit(site, 1, category="recall", to=lambda i: "sam@example.org")
        await wait_until(lambda: queued(gw, 3), timeout=20, message="queued")
        link = f"/u/{tokens.make(email.group_id, 'jo@example.org')}"

        # A link scanner (or the person) following the link changes nothing.
        page = await client.get(link)
        assert page.status_code == 200
        assert "method=post" in page.text and "j•••@example.org" in page.text
        assert "jo@example.org" not in page.text
        assert await email.events("OPTOUTS") == []
        assert (await client.post(link, data={})).status_code == 400
        assert (await client.get("/u/forged")).status_code == 404
        assert (await client.post("/u/forged", data=ONE_CLICK)).status_code == 404

        # The mail client's one-click POST (RFC 8058), twice: one opt-out.
        for _ in range(2):
            done = await client.post(link, data=ONE_CLICK)
            assert done.status_code == 200 and "unsubscribed" in done.text
        assert done.headers["cache-control"] == "no-store"
        (event,) = await email.events("OPTOUTS")
        assert event.type == "stagger.optout.opted_out"
        assert (event.data.group_id, event.data.channel, event.data.recipient, event.data.how) == (
            email.group_id,
            "email",
            "jo@example.org",
            "one_click",
        )
        await wait_until(
            lambda: _suppressed(email, set(leaving)), timeout=20, message="queued mail suppressed"
        )
        await email.tick(site, 10, manual=True)
        await wait_until(lambda: len(server.received) == 1, timeout=20, message="the rest sent")
    ends = terminal_of(await email.events("DISPATCH"))
    assert {ends[i].type for i in leaving} == {"stagger.dispatch.suppressed"}
    assert ends[staying[0]].type == "stagger.dispatch.sent"
    assert server.received[0].rcpt_tos == ["sam@example.org"]


async def test_mail_queued_after_an_opt_out_is_suppressed_when_claimed(
    email: EmailHarness, smtp_servers
) -> None:
    server = smtp_servers()
    site = await email.make_site(email_settings(server.port))
    tokens = UnsubscribeTokens([email.key.encode()])
    app = FastAPI()
    app.include_router(unsubscribe_router(email.nc, tokens))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://x") as c:
        page = await c.post(
            f"/u/{tokens.make(email.group_id, 'Jo@Example.org')}", data={"confirm": "yes"}
        )
        assert page.status_code == 200
    async with email.gateway() as gw:  # started after the opt-out: it learns it from OPTOUTS
        ids = await email.submit(site, 1, to=lambda i: "jo@example.org")
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await email.tick(site, 10)
        await wait_until(lambda: _suppressed(email, set(ids)), timeout=20, message="suppressed")
    assert server.received == []
    (event,) = await email.events("OPTOUTS")
    assert event.data.how == "unsubscribe_link"


async def _suppressed(email: EmailHarness, ids: set[str]) -> bool:
    ends = terminal_of(await email.events("DISPATCH"))
    return all(i in ends and ends[i].type == "stagger.dispatch.suppressed" for i in ids)
