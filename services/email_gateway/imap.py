"""IMAP with the standard library's imaplib, each blocking call run in a worker thread.

Mailboxes are only ever EXAMINEd (read-only) and fetched with BODY.PEEK: Stagger never marks,
moves or deletes a practice's mail. Failures are raised as `ImapFailure` naming the step
(connect, tls, login, imap) for the account's status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import imaplib
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

from shared.domain.site_settings import ImapAccount as ImapSettings

T = TypeVar("T")
_FETCH_META = re.compile(rb"UID (\d+)|RFC822\.SIZE (\d+)|INTERNALDATE \"([^\"]+)\"")


class ImapFailure(Exception):
    """An IMAP step failed; `stage` is connect, tls, login or imap."""

    def __init__(self, stage: Literal["connect", "tls", "login", "imap"], message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class ImapEndpoint:
    """Where and how to reach a mailbox account (password already opened)."""

    account: str
    host: str
    port: int
    security: Literal["tls", "starttls", "none"]
    username: str
    password: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        raw = "\x1f".join([self.host, str(self.port), self.security, self.username, self.password])
        return hashlib.sha256(raw.encode()).hexdigest()


def imap_account_id(imap: ImapSettings) -> str:
    """A stable id for an IMAP account (never derived from the password)."""
    raw = "\x1f".join([(imap.host or "").lower(), str(imap.port), (imap.username or "").lower()])
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

    def __init__(self, endpoint: ImapEndpoint, timeout: float, tls: ssl.SSLContext) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.tls = tls
        self.conn: imaplib.IMAP4 | None = None
        self.selected: str | None = None
        self.last_used = time.monotonic()

    def open(self) -> ImapSession:
        """Connect, secure and log in."""
        e = self.endpoint
        where = f"{e.host}:{e.port}"
        try:
            if e.security == "tls":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    e.host, e.port, ssl_context=self.tls, timeout=self.timeout
                )
            else:
                conn = imaplib.IMAP4(e.host, e.port, timeout=self.timeout)
                if e.security == "starttls":
                    conn.starttls(ssl_context=self.tls)
        except (OSError, imaplib.IMAP4.error) as exc:
            reason = _ssl_reason(exc)
            if reason is not None:
                raise ImapFailure("tls", f"TLS failure with IMAP server {where}: {reason}") from exc
            if isinstance(exc, imaplib.IMAP4.error) and e.security == "starttls":
                raise ImapFailure("tls", f"IMAP server {where} refused STARTTLS: {exc}") from exc
            raise ImapFailure("connect", f"cannot reach IMAP server {where}: {exc}") from exc
        try:
            conn.login(e.username, e.password)
        except imaplib.IMAP4.error as exc:
            with contextlib.suppress(Exception):
                conn.shutdown()
            raise ImapFailure("login", f"IMAP login refused by {where}: {_text(exc)}") from exc
        except OSError as exc:
            raise ImapFailure("connect", f"IMAP server {where} dropped the login: {exc}") from exc
        self.conn = conn
        return self

    def _call(self, what: str, fn: Callable[[], tuple[str, Any]]) -> list[Any]:
        if self.conn is None:
            raise ImapFailure("imap", "not connected")
        try:
            typ, data = fn()
        except (imaplib.IMAP4.error, OSError) as exc:
            raise ImapFailure("imap", f"IMAP {what} failed: {_text(exc)}") from exc
        if typ != "OK":
            raise ImapFailure("imap", f"IMAP {what} refused: {_text(data)}")
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

    def __init__(self, timeout: float, tls: ssl.SSLContext, idle_seconds: float = 30.0) -> None:
        self.timeout = timeout
        self.tls = tls
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
                    session = ImapSession(endpoint, self.timeout, self.tls)
                    await asyncio.to_thread(session.open)
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
