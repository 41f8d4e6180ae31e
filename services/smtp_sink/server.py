"""The local SMTP sink: an aiosmtpd server that takes every message and keeps it.

What it does with each accepted message, before answering 250:

1. with `sent_imap_url`, APPENDs it to that IMAP folder (what Microsoft 365 and Gmail do with
   mail submitted over SMTP: it appears in Sent);
2. with `store`, adds it to a Maildir;
3. writes one JSON line to `received.jsonl` (time, Message-ID, envelope, size, file);
4. waits `reply_delay_seconds` (a slow provider).

Optionally it requires AUTH, offers STARTTLS or implicit TLS, and refuses recipients matching
a pattern. Tests run the same server in a thread (`SinkServer.start_in_thread`) and may script
faults per stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import json
import logging
import mailbox
import re
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from services.smtp_sink.settings import Settings

log = logging.getLogger("smtp_sink")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)

# A script sees (stage, envelope, data) and may answer instead of the sink: an SMTP reply
# ("451 4.3.0 try later"), or "drop" to close the connection without a reply.
Script = Callable[[str, Envelope, bytes | None], Awaitable[str | None] | str | None]


@dataclass
class Received:
    """One accepted message."""

    received_at: float
    message_id: str | None
    mail_from: str
    rcpt_tos: list[str]
    size: int
    peer: str
    file: str | None = None
    data: bytes | None = field(default=None, repr=False)

    def journal_line(self) -> str:
        record = {
            "received_at": self.received_at,
            "message_id": self.message_id,
            "mail_from": self.mail_from,
            "rcpt_tos": self.rcpt_tos,
            "size": self.size,
            "peer": self.peer,
            "file": self.file,
        }
        return json.dumps(record, separators=(",", ":")) + "\n"


def message_id_of(data: bytes) -> str | None:
    """The Message-ID header of raw message bytes."""
    head = data.split(b"\r\n\r\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    return found.group(1).decode("ascii", "replace") if found else None


class SentFolder:
    """Appends accepted messages to an IMAP folder (blocking; called from a worker thread)."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("imap", "imaps") or not parsed.hostname:
            raise ValueError("sent_imap_url must look like imap://user:password@host:port/Folder")
        self.host = parsed.hostname
        self.port = parsed.port or (993 if parsed.scheme == "imaps" else 143)
        self.secure = parsed.scheme == "imaps"
        self.user = urllib.parse.unquote(parsed.username or "")
        self.password = urllib.parse.unquote(parsed.password or "")
        self.folder = urllib.parse.unquote(parsed.path.lstrip("/")) or "Sent"
        self._conn: imaplib.IMAP4 | None = None
        self._lock = threading.Lock()

    def _connect(self) -> imaplib.IMAP4:
        conn: imaplib.IMAP4 = (
            imaplib.IMAP4_SSL(self.host, self.port, timeout=30)
            if self.secure
            else imaplib.IMAP4(self.host, self.port, timeout=30)
        )
        conn.login(self.user, self.password)
        return conn

    def append(self, data: bytes) -> None:
        folder = '"' + self.folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
        with self._lock:
            for attempt in range(3):
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    typ, detail = self._conn.append(folder, None, None, data)
                    if typ == "OK":
                        return
                    if b"TRYCREATE" in b" ".join(d for d in detail if isinstance(d, bytes)):
                        self._conn.create(folder)
                        continue
                    raise RuntimeError(f"APPEND refused: {detail!r}")
                except (OSError, imaplib.IMAP4.error):
                    self.close_locked()
                    if attempt == 2:
                        raise

    def close_locked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.logout()
            self._conn = None


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
    ) -> None:
        self.directory = directory
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


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context for the sink."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


class SinkServer:
    """The sink's listening socket and handler."""

    def __init__(
        self,
        settings: Settings,
        directory: Path | None,
        *,
        keep_data: bool = False,
        script: Script | None = None,
    ) -> None:
        self.settings = settings
        self.handler = SinkHandler(
            directory=directory,
            store=settings.store,
            reply_delay=settings.reply_delay_seconds,
            reject=settings.reject_recipients,
            sent=SentFolder(settings.sent_imap_url) if settings.sent_imap_url else None,
            keep_data=keep_data,
            script=script,
        )
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.settings.port

    def _authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        s = self.settings
        ok = (
            isinstance(data, LoginPassword)
            and s.username is not None
            and s.password is not None
            and data.login.decode(errors="replace") == s.username
            and data.password.decode(errors="replace") == s.password.get_secret_value()
        )
        if ok:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication failed")

    def _factory(self) -> SMTP:
        s = self.settings
        kwargs: dict[str, Any] = {
            "hostname": "stagger-smtp-sink",
            "ident": "Stagger SMTP sink",
            "data_size_limit": s.max_message_bytes,
            "enable_SMTPUTF8": True,
            "decode_data": False,
            "timeout": 60,
        }
        if s.tls == "starttls":
            assert s.tls_cert is not None and s.tls_key is not None
            kwargs["tls_context"] = server_tls_context(s.tls_cert, s.tls_key)
            kwargs["require_starttls"] = True
        if s.username is not None:
            kwargs["authenticator"] = self._authenticator
            kwargs["auth_required"] = True
            # With implicit TLS the whole session is encrypted, but aiosmtpd only knows about
            # TLS it negotiated itself (STARTTLS), so it must not insist on it then.
            kwargs["auth_require_tls"] = s.tls == "starttls"
        with warnings.catch_warnings():
            # AUTH over plain SMTP is what a local relay does; the sink says so in its docs.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return SMTP(self.handler, **kwargs)

    async def start(self) -> None:
        """Listen (in the running loop)."""
        s = self.settings
        ssl_context = None
        if s.tls == "tls":
            assert s.tls_cert is not None and s.tls_key is not None
            ssl_context = server_tls_context(s.tls_cert, s.tls_key)
        self._server = await asyncio.get_running_loop().create_server(
            self._factory, host=s.host, port=s.port, ssl=ssl_context, reuse_address=True
        )

    async def stop(self) -> None:
        """Stop listening and close the journal."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        self.handler.close()

    def start_in_thread(self) -> SinkServer:
        """Run in a background thread with its own loop (tests)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            pending = asyncio.all_tasks(loop)  # sessions still open
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name=f"smtp-sink:{self.port}", daemon=True)
        self._thread.start()
        ready.wait(15)
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        """Stop a server started with `start_in_thread`."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
            self._thread = None


async def run(settings: Settings, directory: Path) -> int:
    """Serve until SIGTERM/SIGINT."""
    server = SinkServer(settings, directory)

    def announce(record: Received) -> None:
        log.info(
            "accepted %s from %s to %s (%d bytes)",
            record.message_id,
            record.mail_from,
            ", ".join(record.rcpt_tos),
            record.size,
        )

    server.handler.listeners.append(announce)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "SMTP sink listening on %s:%d (%s); mail kept in %s",
        settings.host,
        settings.port,
        settings.tls,
        directory,
    )
    await stop.wait()
    await server.stop()
    return 0


def main() -> None:
    """Process entry point."""
    from shared.config import load_settings
    from shared.logs import configure_logging

    stagger = load_settings()
    configure_logging("smtp_sink", stagger.log_level, stagger.log_format)
    settings = Settings()
    directory = settings.dir or stagger.var_dir / "smtp-sink"
    sys.exit(asyncio.run(run(settings, directory.expanduser().resolve())))
