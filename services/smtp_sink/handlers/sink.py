"""What the sink does with each SMTP command: refuse what is configured to be refused, keep the
rest (Sent folder, Maildir, journal line), or let a test's script answer instead."""

from __future__ import annotations

import asyncio
import mailbox
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.smtp_sink.adapters.sent_folder import SentFolder
from services.smtp_sink.domain.received import Received, message_id_of

# A script sees (stage, envelope, data) and may answer instead of the sink: an SMTP reply
# ("451 4.3.0 try later"), or "drop" to close the connection without a reply.
Script = Callable[[str, Envelope, bytes | None], Awaitable[str | None] | str | None]


class SinkHandler:
    """aiosmtpd handler: refuse what is configured to be refused, keep the rest."""

    def __init__(
        self,
        *,
        directory: Path | None,
        store: bool = True,
        reply_delay: float = 0.0,
        reject: str | None = None,
        sent: SentFolder | None = None,
        keep_data: bool = False,
        script: Script | None = None,
        pipelining: bool = True,
    ) -> None:
        self.directory = directory
        self.pipelining = pipelining
        self.reply_delay = reply_delay
        self.reject = re.compile(reject) if reject else None
        self.sent = sent
        self.keep_data = keep_data
        self.script = script
        self.received: list[Received] = []
        self.listeners: list[Callable[[Received], None]] = []
        self._maildir: mailbox.Maildir | None = None
        self._journal: Any = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            if store:
                self._maildir = mailbox.Maildir(directory / "maildir", create=True)
            self._journal = open(directory / "received.jsonl", "a", buffering=1)  # noqa: SIM115

    async def _scripted(self, stage: str, envelope: Envelope, data: bytes | None) -> str | None:
        if self.script is None:
            return None
        answer = self.script(stage, envelope, data)
        if asyncio.iscoroutine(answer):
            answer = await answer
        return answer  # type: ignore[return-value]

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Offer PIPELINING (RFC 2920) like the large providers do. aiosmtpd already reads
        commands one line at a time from its buffer, so several sent at once are answered in
        order; it only does not say so."""
        session.host_name = hostname  # what aiosmtpd does itself when no hook is set
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        scripted = await self._scripted("rcpt", envelope, address.encode())
        if scripted is not None:
            return scripted
        if self.reject is not None and self.reject.search(address):
            return f"550 5.1.1 <{address}>: recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not data:
            data = envelope.content
        scripted = await self._scripted("data", envelope, data)
        if scripted == "drop":
            if isinstance(server.transport, asyncio.Transport):
                server.transport.abort()
            return "421 4.4.2 connection dropped"
        if scripted is not None:
            return scripted
        if self.sent is not None:
            await asyncio.to_thread(self.sent.append, data)
        record = Received(
            received_at=time.time(),
            message_id=message_id_of(data),
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            size=len(data),
            peer=str(session.peer[0]) if session.peer else "",
            data=data if self.keep_data else None,
        )
        if self._maildir is not None:
            maildir = self._maildir
            record.file = await asyncio.to_thread(maildir.add, data)
        if self._journal is not None:
            self._journal.write(record.journal_line())
        self.received.append(record)
        for listener in self.listeners:
            listener(record)
        scripted = await self._scripted("after_data", envelope, data)
        if scripted == "drop":
            if isinstance(server.transport, asyncio.Transport):
                server.transport.abort()
            return "421 4.4.2 connection dropped"
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        return f"250 2.0.0 Ok: queued as {len(self.received)}"

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self.sent is not None:
            with self.sent._lock:
                self.sent.close_locked()
