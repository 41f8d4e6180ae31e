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
import ssl
import threading
import warnings
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from services.smtp_sink.config import SinkConfig
from services.smtp_sink.handlers.sink import SinkHandler


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context for the sink."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


class SinkServer:
    """The sink's listening socket and handler."""

    def __init__(self, settings: SinkConfig, handler: SinkHandler) -> None:
        self.settings = settings
        self.handler = handler
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
