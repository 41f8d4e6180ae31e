"""Sending: well-formed messages, pace within a cycle, reused connections, manual mode, caps."""

from __future__ import annotations

import base64
import itertools
from collections import Counter
from urllib.parse import urlsplit

from shared.unsubscribe import UnsubscribeTokens
from tests.integration.email_gateway.conftest import (
    PUBLIC_URL,
    EmailHarness,
    email_settings,
    ended,
    queued,
    states,
    terminal_of,
    ticks_done,
)
from tests.support.waiting import wait_until

PDF = b"%PDF-1.4\n% a letter\n"


async def test_messages_are_well_formed(email: EmailHarness, smtp_servers) -> None:
    server = smtp_servers()
    site = await email.make_site(email_settings(server.port))
    attachment = {
        "filename": "recall letter é.pdf",
        "content_type": "application/pdf",
        "content_base64": base64.b64encode(PDF).decode(),
    }
    async with email.gateway() as gw:
        bulk = await email.submit(
            site,
            1,
            category="recall",
            extra={
                "subject": "Your recall – Smile Dental",
                "html": "<p>Book now – or <a href='{{unsubscribe_url}}'>unsubscribe</a></p>",
                "attachments": [attachment],
            },
        )
        reminder = await email.submit(site, 1, category="reminder", to=lambda i: "jo@example.org")
        await wait_until(lambda: queued(gw, 2), timeout=20, message="both queued")
        await email.tick(site, 10)
        await wait_until(lambda: len(server.received) == 2, timeout=20, message="both sent")
        await wait_until(lambda: ended(email, 2), timeout=20, message="two terminal events")

    by_id = {m["Message-ID"]: m for m in server.parsed()}
    recall = by_id[f"<{bulk[0]}@smile.example>"]
    plain = by_id[f"<{reminder[0]}@smile.example>"]
    # Headers a receiver checks (RFC 5322; Gmail's sender guidelines).
    for message in (recall, plain):
        assert message["From"].addresses[0].display_name == "Smile Dental, High St"
        assert message["From"].addresses[0].addr_spec == "front@smile.example"
        assert message["Date"].datetime is not None
        assert message["MIME-Version"] == "1.0"
    assert recall["Subject"] == "Your recall – Smile Dental"
    assert recall["To"] == "patient0@example.org"
    # Bulk mail: RFC 8058 one-click unsubscribe, on one line (never folded), to our endpoint.
    raw = server.received[[r.message_id for r in server.received].index(recall["Message-ID"])]
    header_block = (raw.data or b"").split(b"\r\n\r\n", 1)[0].decode()
    lines = [line for line in header_block.split("\r\n") if line.startswith("List-Unsubscribe:")]
    assert len(lines) == 1 and lines[0].endswith(">")
    url = lines[0].removeprefix("List-Unsubscribe: <").removesuffix(">")
    assert url.startswith(f"{PUBLIC_URL}/u/")
    assert recall["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    who = UnsubscribeTokens([email.key.encode()]).check(urlsplit(url).path.rsplit("/", 1)[1])
    assert who is not None and (who.group_id, who.address) == (
        email.group_id,
        "patient0@example.org",
    )
    assert "patient0" not in url, "the address is not readable in the link"
    # The placeholder in the HTML became the same link; text and HTML both present.
    assert url in recall.get_body(("html",)).get_content()
    assert "check-up is due" in recall.get_body(("plain",)).get_content()
    (attached,) = list(recall.iter_attachments())
    assert attached.get_filename() == "recall letter é.pdf"
    assert attached.get_content() == PDF
    # Service mail (a reminder) carries no List-Unsubscribe.
    assert plain["List-Unsubscribe"] is None
    # Envelope: from the practice's address, to the patient.
    assert {r.mail_from for r in server.received} == {"front@smile.example"}


async def test_a_cycle_keeps_its_spacing_on_one_reused_connection(
    email: EmailHarness, smtp_servers
) -> None:
    server = smtp_servers()
    site = await email.make_site(email_settings(server.port))
    async with email.gateway() as gw:
        await email.submit(site, 5)
        await wait_until(lambda: queued(gw, 5), timeout=20, message="queued")
        await email.tick(site, 4, spacing=0.5)
        await wait_until(lambda: len(server.received) == 4, timeout=20, message="budget sent")
        await wait_until(lambda: ended(email, 4), timeout=20, message="recorded")
        assert (await states(gw))["queued"] == 1, "the tick's budget bounds what goes"
        assert gw.pool.connections_opened == 1, "one connection, reused within the cycle"
    times = [r.received_at for r in server.received]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.45, gaps


async def test_manual_mode_holds_mail_until_send_now(email: EmailHarness, smtp_servers) -> None:
    server = smtp_servers()
    site = await email.make_site(email_settings(server.port, mode="manual"))
    async with email.gateway() as gw:
        ids = await email.submit(site, 6)
        await wait_until(lambda: queued(gw, 6), timeout=20, message="queued")
        # A cycle tick that slipped through (e.g. issued just before the mode changed).
        await email.tick(site, 6, spacing=0.0)
        await wait_until(
            lambda: _deferred_for(email, "manual mode", 6), timeout=20, message="held for send-now"
        )
        assert server.received == []
        # Send-now: a manual tick with no spacing sends everything at once.
        await email.tick(site, 100_000, manual=True, reason="send-now by test:staff")
        await wait_until(lambda: len(server.received) == 6, timeout=20, message="all sent")
        await wait_until(lambda: ended(email, 6), timeout=20, message="recorded")
    times = [r.received_at for r in server.received]
    assert max(times) - min(times) < 3.0, "send-now ignores the delay"
    ends = terminal_of(await email.events("DISPATCH"))
    assert {ends[i].type for i in ids} == {"stagger.dispatch.sent"}
    assert all(ends[i].data.released_by.manual for i in ids)


async def test_disabled_email_sends_nothing(email: EmailHarness, smtp_servers) -> None:
    server = smtp_servers()
    site = await email.make_site(email_settings(server.port))
    async with email.gateway() as gw:
        await email.submit(site, 2)
        await wait_until(lambda: queued(gw, 2), timeout=20, message="queued")
        await email.change_site(site, {"email": {"enabled": False}})
        await wait_until(lambda: _site_disabled(gw, site), timeout=20, message="settings seen")
        await email.tick(site, 10, receive=True)
        await wait_until(
            lambda: _deferred_for(email, "email is off", 2), timeout=20, message="deferred"
        )
        assert server.received == []
        assert (await states(gw))["queued"] == 2, "kept, not lost"


async def test_daily_cap_holds_per_account(email: EmailHarness, smtp_servers) -> None:
    server = smtp_servers()
    settings = email_settings(server.port, daily_cap=3, username="front@smile.example")
    site_a = await email.make_site(settings)
    site_b = await email.make_site(settings)  # the same login: the same account and cap
    async with email.gateway() as gw:
        await email.submit(site_a, 2)
        await email.submit(site_b, 2)
        await wait_until(lambda: queued(gw, 4), timeout=20, message="queued")
        await email.tick(site_a, 100, manual=True)
        await email.tick(site_b, 100, manual=True)
        await wait_until(
            lambda: _deferred_for(email, "daily cap", 1), timeout=20, message="cap reached"
        )
        await wait_until(lambda: ended(email, 3), timeout=20, message="three recorded")
        assert len(server.received) == 3
        assert (await states(gw))["queued"] == 1


async def test_transient_refusals_are_retried_and_permanent_ones_fail_with_the_reply(
    email: EmailHarness, smtp_servers
) -> None:
    refusals: Counter[str] = Counter()

    def script(stage: str, envelope, data):  # type: ignore[no-untyped-def]
        if stage == "data" and b"Recall 0" in (data or b"") and refusals["busy"] < 2:
            refusals["busy"] += 1
            return "451 4.3.0 mailbox busy, try later"
        return None

    server = smtp_servers(reject_recipients=r"^nobody@", script=script)
    site = await email.make_site(email_settings(server.port))
    async with email.gateway() as gw:
        ids = await email.submit(
            site, 2, to=lambda i: "patient@example.org" if i == 0 else "nobody@example.org"
        )
        await wait_until(lambda: queued(gw, 2), timeout=20, message="queued")
        for _ in range(30):
            await email.tick(site, 10)
            if len(await email.terminal()) == 2:
                break
            await wait_until(lambda: ticks_done(email), timeout=10, message="tick taken")
        await wait_until(lambda: ended(email, 2), timeout=20, message="both ended")
    events = await email.events("DISPATCH")
    ends = terminal_of(events)
    assert ends[ids[0]].type == "stagger.dispatch.sent"
    assert ends[ids[0]].data.attempts == 3
    assert ends[ids[1]].type == "stagger.dispatch.failed"
    assert ends[ids[1]].data.permanent is True
    assert "550 5.1.1" in ends[ids[1]].data.reason
    assert "550 5.1.1" in (ends[ids[1]].data.provider_response or "")
    deferred = [e for e in events if e.type == "stagger.dispatch.deferred"]
    assert [e.data.message_id for e in deferred] == [ids[0], ids[0]]
    assert all("451 4.3.0" in e.data.reason for e in deferred)
    assert server.message_ids()[f"<{ids[0]}@smile.example>"] == 1


async def _deferred_for(email: EmailHarness, text: str, n: int) -> bool:
    events = await email.events("DISPATCH")
    found = {
        e.data.message_id
        for e in events
        if e.type == "stagger.dispatch.deferred" and text in e.data.reason
    }
    return len(found) >= n


async def _site_disabled(gw, site_id: str) -> bool:  # type: ignore[no-untyped-def]
    site = gw.engine.sites.get(site_id)
    return site is not None and not site.settings.email.enabled
