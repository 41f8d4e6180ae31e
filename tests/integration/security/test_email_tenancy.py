"""Email receiving stays inside the mailbox's group, and reads no more than the cap.

- A delivery report (DSN) read from group A's mailbox only ever marks a message of group A
  undelivered, even when it names group B's Message-ID (real dovecot).
- A server that announces a small RFC822.SIZE and then sends a huge literal is cut off at
  `STAGGER_EMAIL_GATEWAY_INBOUND_MAX_BYTES`: the message is recorded from its header only.
  Dovecot never lies about sizes, so this one is a small IMAP server written here, speaking the
  protocol over a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from shared.privacy.codec import PersonalData
from tests.integration.email_gateway.conftest import (
    EmailHarness,
    email,  # noqa: F401  (fixture)
    email_settings,
    ended,
    imap_settings,
    queued,
    ticks_done,
)
from tests.integration.email_gateway.test_receiving import bounce
from tests.support.imap import Dovecot, dovecot  # noqa: F401  (fixture)
from tests.support.smtp import smtp_servers  # noqa: F401  (fixture)
from tests.support.waiting import wait_until


async def _inbound(email: EmailHarness, site_id: str) -> list[Any]:  # noqa: F811
    return [
        e
        for e in await email.events("INBOUND")
        if e.type == "stagger.inbound.email_received" and e.data.site_id == site_id
    ]


async def _undelivered(email: EmailHarness) -> list[str]:  # noqa: F811
    return [
        e.data.message_id
        for e in await email.events("DISPATCH")
        if e.type == "stagger.dispatch.undelivered"
    ]


async def test_a_bounce_in_one_groups_mailbox_never_touches_another_groups_message(
    email: EmailHarness,  # noqa: F811
    smtp_servers: Any,  # noqa: F811
    dovecot: Dovecot,  # noqa: F811
) -> None:
    server = smtp_servers()
    user_a, _ = dovecot.add_user()
    user_b, _ = dovecot.add_user()
    group_b = f"g-{uuid.uuid4().hex[:8]}"
    site_a = await email.make_site(
        email_settings(server.port, imap=imap_settings(dovecot, user_a, sent_folder=None))
    )
    site_b = await email.make_site(
        email_settings(
            server.port,
            address="desk@other-practice.example",
            imap=imap_settings(dovecot, user_b, sent_folder=None),
        ),
        group_id=group_b,
    )
    async with email.gateway() as gw:
        (theirs,) = await email.submit(site_b, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await email.tick(site_b, 10)
        await wait_until(lambda: ended(email, 1), timeout=30, message="B's message sent")
        header = f"<{theirs}@other-practice.example>"
        assert server.parsed()[0]["Message-ID"] == header

        # A report naming B's message arrives in A's mailbox: recorded for A, matched to
        # nothing, and B's message is untouched.
        dovecot.append(user_a, "INBOX", bounce(header, "patient0@example.org"))
        await email.tick(site_a, 10, receive=True)
        await wait_until(lambda: _inbound(email, site_a), timeout=30, message="A's poll")
        (report,) = await _inbound(email, site_a)
        assert report.data.kind == "bounce"
        assert report.data.group_id == email.group_id
        assert report.data.matched_message_id is None
        assert await _undelivered(email) == []

        # The same report in B's own mailbox does mark B's message (the report is valid).
        dovecot.append(user_b, "INBOX", bounce(header, "patient0@example.org"))
        await email.tick(site_b, 10, receive=True)
        await wait_until(lambda: _inbound(email, site_b), timeout=30, message="B's poll")
        await wait_until(lambda: ticks_done(email), timeout=30, message="polls done")
    (own,) = await _inbound(email, site_b)
    assert own.data.matched_message_id == theirs
    assert await _undelivered(email) == [theirs]


# --- a server that lies about sizes -----------------------------------------------------------

CAP = 32 * 1024
HEADER = (
    b"From: Big Sender <big@example.org>\r\n"
    b"To: front@smile.example\r\n"
    b"Subject: A very large letter\r\n"
    b"Message-ID: <big-1@example.org>\r\n"
    b"\r\n"
)
BODY = HEADER + b"x" * (16 * 1024 * 1024 - len(HEADER))
CLAIMED = 900
_COMMAND = re.compile(rb"^(\S+) (.*?)\r?\n$")


@dataclass
class LyingImap:
    """One mailbox holding one message, announced as 900 bytes and sent as 16 MiB."""

    port: int = 0
    connections: int = 0
    body_bytes_written: list[int] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"* OK [CAPABILITY IMAP4rev1] lying server ready\r\n")
        try:
            while line := await reader.readline():
                match = _COMMAND.match(line)
                if match is None:
                    return
                tag, rest = match.group(1), match.group(2)
                command = rest.decode().upper()
                self.commands.append(command)
                writer.write(self._answer(tag, command, writer))
                await writer.drain()
                if command.startswith("LOGOUT"):
                    return
        except (ConnectionError, BrokenPipeError):
            return
        finally:
            writer.close()

    def _answer(self, tag: bytes, command: str, writer: asyncio.StreamWriter) -> bytes:
        done = tag + b" OK done\r\n"
        if command.startswith("CAPABILITY"):
            return b"* CAPABILITY IMAP4rev1\r\n" + done
        if command.startswith(("LOGIN", "NOOP", "LOGOUT")):
            return (b"* BYE\r\n" if command.startswith("LOGOUT") else b"") + done
        if command.startswith(("EXAMINE", "SELECT")):
            return (
                b"* 1 EXISTS\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT 2] ok\r\n"
                + tag
                + b" OK [READ-ONLY] done\r\n"
            )
        if command.startswith("UID SEARCH"):
            return b"* SEARCH 1\r\n" + done
        if "RFC822.SIZE" in command:
            return (
                f'* 1 FETCH (UID 1 RFC822.SIZE {CLAIMED} INTERNALDATE "07-Dec-2026 02:00:00 '
                f'+0000")\r\n'.encode()
                + done
            )
        if "BODY.PEEK[HEADER]" in command:
            return (
                b"* 1 FETCH (UID 1 BODY[HEADER] {%d}\r\n" % len(HEADER) + HEADER + b")\r\n" + done
            )
        if "BODY.PEEK[]" in command:
            asyncio.get_running_loop().create_task(self._send_body(tag, writer))
            return b""
        return tag + b" BAD unknown\r\n"

    async def _send_body(self, tag: bytes, writer: asyncio.StreamWriter) -> None:
        written = 0
        self.body_bytes_written.append(0)
        try:
            writer.write(b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % len(BODY))
            for start in range(0, len(BODY), 64 * 1024):
                writer.write(BODY[start : start + 64 * 1024])
                await writer.drain()
                written += 64 * 1024
                self.body_bytes_written[-1] = written
            writer.write(b")\r\n" + tag + b" OK done\r\n")
            await writer.drain()
        except (ConnectionError, BrokenPipeError):
            return


@contextlib.asynccontextmanager
async def lying_imap() -> AsyncIterator[LyingImap]:
    fake = LyingImap()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_a_server_lying_about_the_size_is_cut_off_at_the_cap(
    email: EmailHarness,  # noqa: F811
    smtp_servers: Any,  # noqa: F811
) -> None:
    server = smtp_servers()
    async with lying_imap() as fake:
        imap = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": fake.port,
            "security": "none",
            "username": "front",
            "password": "secret",
        }
        site = await email.make_site(email_settings(server.port, imap=imap))
        async with email.gateway(inbound_max_bytes=CAP):
            await email.tick(site, 10, receive=True)
            await wait_until(lambda: _inbound(email, site), timeout=60, message="recorded")
        (event,) = await _inbound(email, site)
    assert event.data.truncated is True, "recorded from its header, the body never read"
    # Sealed on arrival (docs/privacy.md): opened under the sender's key.
    subject = await PersonalData(email.nc, email.box).open(event.data.group_id, event.data.subject)
    assert event.data.subject.startswith("pd1:") and subject == "A very large letter"
    assert event.data.size == CLAIMED
    assert any("BODY.PEEK[]" in c for c in fake.commands), "the whole message was asked for"
    # The client stopped reading as soon as the literal was announced bigger than the cap:
    # the server could not push the 16 MiB into the closed connection.
    assert fake.body_bytes_written and fake.body_bytes_written[0] < len(BODY)
    assert fake.connections >= 2, "the header came on a fresh connection"
