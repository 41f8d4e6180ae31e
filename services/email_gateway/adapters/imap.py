"""IMAP with the standard library's imaplib, each blocking call run in a worker thread.

Mailboxes are only ever EXAMINEd (read-only) and fetched with BODY.PEEK: Stagger never marks,
moves or deletes a practice's mail. Failures are raised as `ImapFailure` naming the step
(connect, tls, login, imap) for the account's status; they carry the step and a fixed reason,
never the server's own words (those reach debug logs only).

The connection goes to an address the outbound allow-list admits, judged when the session
opens (`shared.net.outbound`). Every command's answer is bounded by the bytes actually read
from the socket, not by what the server announces (an RFC822.SIZE, a literal's `{n}`): a
server that sends more than the cap is cut off there (`ImapTooLarge`) before it is read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import imaplib
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

from services.email_gateway.adapters.imap_errors import ImapFailure
from shared.domain.site_settings import ImapAccount as ImapSettings
from shared.email_auth.login import OAuthLogin, SignInRefused, imap_sign_in
from shared.net.outbound import DestinationRefused, OutboundGuard
from shared.net.remote import log_remote

T = TypeVar("T")
log = logging.getLogger(__name__)
_FRAMING_BYTES = 64 * 1024
"""Allowance over the message cap for one answer's own lines (FETCH items, tags, flags)."""
_FETCH_META = re.compile(rb"UID (\d+)|RFC822\.SIZE (\d+)|INTERNALDATE \"([^\"]+)\"")


class ImapTooLarge(ImapFailure):
    """The server sent more than the cap for one answer (the session is unusable after)."""

    def __init__(self, message: str) -> None:
        super().__init__("imap", message)


class _OverBudget(imaplib.IMAP4.abort):
    """Raised inside imaplib's read loop (which re-wraps it) when the budget is spent."""


class _Bounded:
    """imaplib's reads, counted: each command may read at most `budget` bytes in all."""

    budget: int | None = None
    spent: int = 0
    exceeded: bool = False  # imaplib re-raises errors as its own: the flag survives that
    file: Any

    def start_budget(self, budget: int | None) -> None:
        self.budget, self.spent = budget, 0

    def _spend(self, size: int) -> None:
        if self.budget is not None and self.spent + size > self.budget:
            self.exceeded = True
            raise _OverBudget(f"the server's answer exceeds {self.budget} bytes")
        self.spent += size

    def read(self, size: int) -> bytes:
        # A literal's length is announced before it is sent: refuse before reading it.
        self._spend(size)
        data: bytes = self.file.read(size)
        return data

    def readline(self) -> bytes:
        limit = imaplib._MAXLINE  # type: ignore[attr-defined]
        if self.budget is not None:
            limit = min(limit, max(0, self.budget - self.spent))
        line: bytes = self.file.readline(limit + 1)
        self._spend(len(line))
        if len(line) > limit:
            self.exceeded = True
            raise _OverBudget(f"the server's answer exceeds {self.budget} bytes")
        return line


class _PlainConnection(_Bounded, imaplib.IMAP4):
    def __init__(
        self, sock: socket.socket, host: str, port: int, timeout: float, budget: int
    ) -> None:
        self._given = sock
        self.start_budget(budget)  # the greeting is read by imaplib's constructor
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._given


class _TlsConnection(_Bounded, imaplib.IMAP4_SSL):
    def __init__(
        self,
        sock: socket.socket,
        host: str,
        port: int,
        timeout: float,
        budget: int,
        tls: ssl.SSLContext,
    ) -> None:
        self._given = sock
        self.start_budget(budget)
        super().__init__(host, port, ssl_context=tls, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        # TLS is checked against the configured host name, whatever address it resolved to.
        wrapped: socket.socket = self.ssl_context.wrap_socket(
            self._given, server_hostname=self.host
        )
        return wrapped


@dataclass(frozen=True)
class ImapEndpoint:
    """Where and how to reach a mailbox account (password already opened)."""

    account: str
    host: str
    port: int
    security: Literal["tls", "starttls", "none"]
    username: str
    password: str = field(repr=False)
    # Issue 19: OAuth 2.0 sign-in (SASL XOAUTH2/OAUTHBEARER) instead of the password.
    oauth: OAuthLogin | None = field(default=None, repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        parts = [self.host, str(self.port), self.security, self.username, self.password]
        raw = "\x1f".join([*parts, self.oauth.fingerprint if self.oauth is not None else ""])
        return hashlib.sha256(raw.encode()).hexdigest()


def imap_account_id(imap: ImapSettings, group_id: str) -> str:
    """A stable id for a group's IMAP account (never derived from the password); two groups
    reading the same mailbox keep separate sessions, statuses and inbound event ids."""
    raw = "\x1f".join(
        [group_id, (imap.host or "").lower(), str(imap.port), (imap.username or "").lower()]
    )
    return f"imap-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def mailbox_name(name: str) -> str:
    """A mailbox name as an IMAP argument: modified UTF-7 (RFC 3501 §5.1.3), quoted."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",").decode() + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    encoded = "".join(out).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{encoded}"'


def quoted(value: str) -> str:
    """A search string as an IMAP quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ssl_reason(exc: BaseException) -> str | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return None


@dataclass(frozen=True)
class MessageMeta:
    """Size and arrival time of one message."""

    uid: int
    size: int
    internal_date: datetime


class ImapSession:
    """One logged-in IMAP connection (blocking; use from one thread at a time)."""

    def __init__(
        self,
        endpoint: ImapEndpoint,
        timeout: float,
        tls: ssl.SSLContext,
        *,
        guard: OutboundGuard,
        max_bytes: int,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.tls = tls
        self.guard = guard
        # What one command may read: a whole message up to the inbound cap, plus framing.
        self.budget = max_bytes + _FRAMING_BYTES
        self.conn: _PlainConnection | _TlsConnection | None = None
        self.selected: str | None = None
        self.last_used = time.monotonic()

    async def connect(self) -> ImapSession:
        """Resolve, judge and connect (async), then secure and log in (in a worker thread)."""
        if self.endpoint.oauth is not None:  # issue 19 hook: OAuth 2.0 sign-in
            from services.email_gateway.adapters.imap_oauth import connect_with_token

            return await connect_with_token(self)
        return await self.connect_once(None)

    async def connect_once(self, token: str | None) -> ImapSession:
        """One connection and sign-in (with a bearer token when given)."""
        e = self.endpoint
        try:
            sock = await self.guard.connect(e.host, e.port, self.timeout)
        except DestinationRefused as exc:
            raise ImapFailure("connect", f"IMAP server {e.host} {exc.reason}") from exc
        except (OSError, TimeoutError) as exc:
            raise ImapFailure(
                "connect", f"cannot reach IMAP server {e.host}:{e.port}: {exc}"
            ) from exc
        try:
            return await asyncio.to_thread(self.open, sock, token)
        except BaseException:
            sock.close()
            raise

    def open(self, sock: socket.socket, token: str | None = None) -> ImapSession:
        """Secure and log in over a socket `connect` opened to a judged address."""
        e = self.endpoint
        where = f"{e.host}:{e.port}"
        conn: _PlainConnection | _TlsConnection
        try:
            if e.security == "tls":
                conn = _TlsConnection(sock, e.host, e.port, self.timeout, self.budget, self.tls)
            else:
                conn = _PlainConnection(sock, e.host, e.port, self.timeout, self.budget)
            conn.start_budget(self.budget)
            if e.security == "starttls":
                conn.starttls(ssl_context=self.tls)
        except (OSError, imaplib.IMAP4.error) as exc:
            reason = _ssl_reason(exc)
            if reason is not None:
                raise ImapFailure("tls", f"TLS failure with IMAP server {where}: {reason}") from exc
            if isinstance(exc, imaplib.IMAP4.error) and e.security == "starttls":
                log_remote(log, "IMAP STARTTLS refused", _text(exc))
                raise ImapFailure("tls", f"IMAP server {where} refused STARTTLS") from exc
            log_remote(log, "IMAP greeting failed", _text(exc))
            why = str(exc) if isinstance(exc, OSError) else type(exc).__name__
            raise ImapFailure("connect", f"cannot reach IMAP server {where}: {why}") from exc
        try:
            conn.start_budget(self.budget)
            if token is not None:  # issue 19 hook: OAuth 2.0 sign-in
                imap_sign_in(conn, e.username, token, e.host, e.port)
            else:
                conn.login(e.username, e.password)
        except SignInRefused as exc:
            with contextlib.suppress(Exception):
                conn.shutdown()
            raise ImapFailure("login", str(exc), held=True) from exc
        except imaplib.IMAP4.error as exc:
            with contextlib.suppress(Exception):
                conn.shutdown()
            log_remote(log, "IMAP login refused", _text(exc))
            raise ImapFailure("login", f"IMAP login refused by {where}") from exc
        except OSError as exc:
            raise ImapFailure("connect", f"IMAP server {where} dropped the login: {exc}") from exc
        self.conn = conn
        return self

    def _call(self, what: str, fn: Callable[[], tuple[str, Any]]) -> list[Any]:
        if self.conn is None:
            raise ImapFailure("imap", "not connected")
        conn = self.conn
        conn.start_budget(self.budget)
        try:
            typ, data = fn()
        except (imaplib.IMAP4.error, OSError) as exc:
            if conn.exceeded:
                # The rest of the answer is still on the wire: this connection is done.
                self.close_now()
                raise ImapTooLarge(
                    f"IMAP {what}: the server's answer exceeds {self.budget} bytes"
                ) from exc
            log_remote(log, f"IMAP {what} failed", _text(exc))
            raise ImapFailure("imap", f"IMAP {what} failed ({type(exc).__name__})") from exc
        if typ != "OK":
            log_remote(log, f"IMAP {what} refused", _text(data))
            raise ImapFailure("imap", f"IMAP {what} refused ({typ})")
        self.last_used = time.monotonic()
        return list(data)

    def examine(self, mailbox: str) -> tuple[int, int]:
        """Open a mailbox read-only; returns (UIDVALIDITY, UIDNEXT)."""
        assert self.conn is not None
        conn = self.conn
        self._call(f"EXAMINE {mailbox}", lambda: conn.select(mailbox_name(mailbox), readonly=True))
        self.selected = mailbox
        validity = conn.response("UIDVALIDITY")[1]
        uidnext = conn.response("UIDNEXT")[1]
        if not validity or validity[0] is None:
            data = self._call(
                "STATUS", lambda: conn.status(mailbox_name(mailbox), "(UIDVALIDITY UIDNEXT)")
            )
            text = _text(data)
            validity = [re.search(r"UIDVALIDITY (\d+)", text).group(1)]  # type: ignore[union-attr]
            uidnext = [re.search(r"UIDNEXT (\d+)", text).group(1)]  # type: ignore[union-attr]
        next_uid = int(_text(uidnext[:1])) if uidnext and uidnext[0] is not None else 0
        return int(_text(validity[:1])), next_uid

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs greater than `last_uid`, ascending."""
        assert self.conn is not None
        conn = self.conn
        data = self._call("SEARCH", lambda: conn.uid("SEARCH", f"UID {last_uid + 1}:*"))
        return sorted(u for u in _numbers(data) if u > last_uid)

    def uids_since(self, day: date) -> list[int]:
        """UIDs of messages that arrived on or after `day`, ascending."""
        assert self.conn is not None
        conn = self.conn
        when = day.strftime("%d-%b-%Y")
        return sorted(_numbers(self._call("SEARCH", lambda: conn.uid("SEARCH", "SINCE", when))))

    def meta(self, uids: list[int]) -> dict[int, MessageMeta]:
        """Size and INTERNALDATE of each message."""
        if not uids:
            return {}
        assert self.conn is not None
        conn = self.conn
        data = self._call(
            "FETCH",
            lambda: conn.uid("FETCH", ",".join(map(str, uids)), "(UID RFC822.SIZE INTERNALDATE)"),
        )
        found: dict[int, MessageMeta] = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid = size = None
            when = datetime.now(UTC)
            for m in _FETCH_META.finditer(line):
                if m.group(1):
                    uid = int(m.group(1))
                elif m.group(2):
                    size = int(m.group(2))
                elif m.group(3):
                    parsed = imaplib.Internaldate2tuple(b'INTERNALDATE "' + m.group(3) + b'"')
                    if parsed is not None:
                        when = datetime.fromtimestamp(time.mktime(parsed), UTC)
            if uid is not None and size is not None:
                found[uid] = MessageMeta(uid, size, when)
        return found

    def fetch(self, uid: int, headers_only: bool = False) -> bytes:
        """The message (or its header) without marking it read."""
        assert self.conn is not None
        conn = self.conn
        part = "BODY.PEEK[HEADER]" if headers_only else "BODY.PEEK[]"
        data = self._call("FETCH", lambda: conn.uid("FETCH", str(uid), f"({part})"))
        for item in data:
            if isinstance(item, tuple) and len(item) >= 2 and isinstance(item[1], bytes):
                return item[1]
        raise ImapFailure("imap", f"message UID {uid} has gone")

    def has_message_id(self, mailbox: str, fragment: str) -> bool:
        """True if the mailbox holds a message whose Message-ID contains `fragment`."""
        assert self.conn is not None
        conn = self.conn
        if self.selected != mailbox:
            self._call(
                f"EXAMINE {mailbox}", lambda: conn.select(mailbox_name(mailbox), readonly=True)
            )
            self.selected = mailbox
        else:
            self._call("NOOP", conn.noop)  # let the server tell us about new mail first
        data = self._call(
            "SEARCH", lambda: conn.uid("SEARCH", "HEADER", "Message-ID", quoted(fragment))
        )
        return bool(_numbers(data))

    def close(self) -> None:
        """Log out (quietly)."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.logout()
            self.conn = None

    def close_now(self) -> None:
        """Drop the connection without a LOGOUT (its answers can no longer be trusted)."""
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.shutdown()
            self.conn = None


def _text(value: object) -> str:
    if isinstance(value, BaseException):
        value = value.args[0] if value.args else str(value)
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value if v is not None)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _numbers(data: list[object]) -> list[int]:
    return [int(x) for x in _text(data).split() if x.isdigit()]


class SessionCache:
    """A few reusable sessions (Sent-folder searches), one per account, closed when idle."""

    def __init__(
        self,
        timeout: float,
        tls: ssl.SSLContext,
        *,
        guard: OutboundGuard,
        max_bytes: int,
        idle_seconds: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self.tls = tls
        self.guard = guard
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, ImapSession] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(self, endpoint: ImapEndpoint, work: Callable[[ImapSession], T]) -> T:
        """Run `work` on the account's session (opened or reopened as needed)."""
        lock = self._locks.setdefault(endpoint.account, asyncio.Lock())
        async with lock:
            for attempt in range(2):
                session = self._sessions.get(endpoint.account)
                if session is None or session.endpoint.fingerprint != endpoint.fingerprint:
                    if session is not None:
                        await asyncio.to_thread(session.close)
                    session = ImapSession(
                        endpoint,
                        self.timeout,
                        self.tls,
                        guard=self.guard,
                        max_bytes=self.max_bytes,
                    )
                    await session.connect()
                    self._sessions[endpoint.account] = session
                try:
                    return await asyncio.to_thread(work, session)
                except ImapFailure as failure:
                    self._sessions.pop(endpoint.account, None)
                    await asyncio.to_thread(session.close)
                    if attempt == 1 or failure.stage != "imap":
                        raise
            raise AssertionError("unreachable")

    async def close_idle(self) -> None:
        """Log out of sessions unused for a while."""
        limit = time.monotonic() - self.idle_seconds
        for account, session in list(self._sessions.items()):
            lock = self._locks.get(account)
            if session.last_used < limit and lock is not None and not lock.locked():
                self._sessions.pop(account, None)
                await asyncio.to_thread(session.close)

    async def close(self) -> None:
        """Log out of every session."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await asyncio.to_thread(session.close)
