"""SMTP with aiosmtplib: connections per account, reused across the sends of a cycle, and every
failure named by the step it happened in.

Security: `starttls` (upgrade required, submission port 587), `tls` (implicit TLS, port 465)
or `none` (plain, for local relays and the development sink). Certificates are always verified
(system CAs plus `STAGGER_EMAIL_GATEWAY_CA_FILE`).

A transaction is MAIL, RCPT, DATA on a connection the account already has open when one is
idle; where the server offers PIPELINING (RFC 2920) the three go out in one write
(`smtp_pipelining`), two round trips a message instead of four. What a failure means for the
message, either way:

| where | reply / error | outcome |
|---|---|---|
| connect, TLS, login | refused, unreachable, 535, certificate | `retry` (account's fault) |
| MAIL, RCPT, DATA | 4xx | `retry` |
| MAIL, RCPT, DATA | 5xx | `failed`, with the server's reply code |
| MAIL, RCPT on a reused connection | connection lost | one immediate retry on a new connection |
| after the message data was sent | connection lost, timeout | `ambiguous`: it may have arrived |

What is said about a server's reply is its reply code and enhanced status code (`550 5.1.1`),
never its text or banner: those are the remote side's words and reach only debug logs
(`shared.net.remote`). Every new connection goes to an address the outbound allow-list admits
(`shared.net.outbound`); a refused host is an account problem (`connect`), retried with back-off
like a refused login, and nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from services.email_gateway.adapters.composer import Composed
from services.email_gateway.adapters.smtp_pipelining import Pipeline
from services.email_gateway.config import EmailGatewayConfig
from shared.dispatch.fence import confirm_lease
from shared.email_auth.login import OAuthLogin, smtp_sign_in
from shared.email_auth.provider import TokenRefused, TokenUnavailable
from shared.net.outbound import DestinationRefused, OutboundGuard
from shared.net.remote import log_remote, smtp_status

log = logging.getLogger(__name__)

Stage = Literal["connect", "tls", "login", "send"]


@dataclass(frozen=True)
class SmtpAccount:
    """Where and how one account sends (password already opened; never logged)."""

    account: str
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Issue 19: OAuth 2.0 sign-in (SASL XOAUTH2/OAUTHBEARER) instead of the password.
    oauth: OAuthLogin | None = field(default=None, repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything about the connection changes (password included)."""
        raw = "\x1f".join(
            [
                self.host,
                str(self.port),
                self.security,
                self.username or "",
                self.password or "",
                self.oauth.fingerprint if self.oauth is not None else "",
            ]
        )
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class SmtpOutcome:
    """What one attempt came to."""

    # `hold`: the sign-in was refused for good (OAuth consent revoked, app disabled): the
    # account waits until its settings change.
    kind: Literal["sent", "retry", "failed", "ambiguous", "hold"]
    stage: Stage
    reply: str = ""
    code: int | None = None
    retry_after: float | None = None  # issue 19: Graph's Retry-After

    @property
    def account_problem(self) -> bool:
        """True when the account, not the message, is at fault (settings-page status)."""
        return self.stage in ("connect", "tls", "login")


class _Failure(Exception):
    def __init__(self, outcome: SmtpOutcome) -> None:
        super().__init__(outcome.reply)
        self.outcome = outcome


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _reply(exc: SMTPResponseException) -> str:
    log_remote(log, "SMTP reply", exc.message, code=exc.code)
    return smtp_status(exc.code, exc.message)


def _by_code(exc: SMTPResponseException, what: str, stage: Stage) -> SmtpOutcome:
    kind: Literal["retry", "failed"] = "retry" if 400 <= exc.code < 500 else "failed"
    return SmtpOutcome(kind, stage, f"{what}: {_reply(exc)}", exc.code)


def classify_connect(exc: BaseException, account: SmtpAccount) -> SmtpOutcome:
    """A failure while connecting, securing or logging in (always worth retrying later)."""
    where = f"{account.host}:{account.port}"
    tls = _ssl_error(exc)
    if tls is not None:
        if isinstance(tls, ssl.SSLCertVerificationError):
            reason = f"certificate verify failed: {tls.verify_message or tls}"
        else:
            reason = tls.reason or str(tls)
        return SmtpOutcome("retry", "tls", f"TLS failure with {where}: {reason}")
    if isinstance(exc, SMTPAuthenticationError):
        return SmtpOutcome(
            "retry", "login", f"SMTP login refused by {where}: {_reply(exc)}", exc.code
        )
    if isinstance(exc, SMTPResponseException):
        return SmtpOutcome(
            "retry", "connect", f"SMTP server {where} refused the session: {_reply(exc)}", exc.code
        )
    if isinstance(exc, TimeoutError):
        return SmtpOutcome("retry", "connect", f"SMTP server {where} did not answer in time")
    if isinstance(exc, SMTPException) and not isinstance(exc, ConnectionError):
        # e.g. "STARTTLS extension not supported", "SMTP AUTH extension not supported".
        text = str(exc)
        stage: Stage = "tls" if "STARTTLS" in text.upper() else "login"
        what = "TLS failure" if stage == "tls" else "SMTP login impossible"
        return SmtpOutcome("retry", stage, f"{what} with {where}: {text}")
    return SmtpOutcome("retry", "connect", f"cannot reach SMTP server {where}: {exc}")


def _sender_refused(exc: SMTPResponseException, sender: str, host: str) -> SmtpOutcome:
    """MAIL refused. 530 (authentication or STARTTLS required) is the account's settings at
    fault, not the message's: retried like a refused login."""
    if exc.code == 530:
        stage: Stage = "tls" if "STARTTLS" in exc.message.upper() else "login"
        return SmtpOutcome(
            "retry",
            stage,
            f"{host} requires {'STARTTLS' if stage == 'tls' else 'a login'} "
            f"before sending: {_reply(exc)}",
            exc.code,
        )
    return _by_code(exc, f"sender {sender} refused", "send")


@dataclass
class _Connection:
    smtp: aiosmtplib.SMTP
    fingerprint: str
    last_used: float
    # Set when the server offers PIPELINING: the connection is then the pipeline's.
    pipeline: Pipeline | None = None

    @property
    def is_connected(self) -> bool:
        if self.pipeline is not None:
            return self.pipeline.is_connected
        return self.smtp.is_connected

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
        self.smtp.close()


class _AccountPool:
    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)
        self.idle: list[_Connection] = []


class SmtpPool:
    """SMTP connections of every account this replica sends through."""

    def __init__(self, settings: EmailGatewayConfig, guard: OutboundGuard) -> None:
        self.settings = settings
        self.guard = guard
        self._pools: dict[str, _AccountPool] = {}
        self._tls = ssl.create_default_context()
        if settings.ca_file is not None:
            self._tls.load_verify_locations(cafile=str(settings.ca_file))
        self._local_hostname = settings.local_hostname
        self.connections_opened = 0

    async def prepare(self) -> None:
        """Resolve the EHLO name once (getfqdn can be slow)."""
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)

    def _pool(self, account: str) -> _AccountPool:
        pool = self._pools.get(account)
        if pool is None:
            pool = self._pools[account] = _AccountPool(self.settings.smtp_connections_per_account)
        return pool

    async def _open(self, account: SmtpAccount) -> _Connection:
        timeout = self.settings.smtp_timeout_seconds
        try:
            # Resolved and judged here, on every new connection (DNS may have changed since
            # the setting was written), and connected to the judged address itself.
            sock = await self.guard.connect(account.host, account.port, timeout)
        except DestinationRefused as exc:
            raise _Failure(
                SmtpOutcome("retry", "connect", f"SMTP server {account.host} {exc.reason}")
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise _Failure(classify_connect(exc, account)) from exc
        smtp = aiosmtplib.SMTP(
            hostname=account.host,
            sock=sock,
            timeout=timeout,
            local_hostname=self._local_hostname,
            use_tls=account.security == "tls",
            start_tls=account.security == "starttls",
            tls_context=self._tls if account.security != "none" else None,
        )
        try:
            await smtp.connect()
            if account.oauth is not None:  # issue 19 hook: OAuth 2.0 sign-in
                await smtp_sign_in(smtp, account.oauth, account.host, account.port)
            elif account.username and account.password:
                await smtp.login(account.username, account.password)
            if self.settings.smtp_pipelining and smtp.is_ehlo_or_helo_needed:
                # Without a login nothing asked EHLO yet: its reply says if PIPELINING is there.
                try:
                    await smtp.ehlo()
                except SMTPHeloError:
                    await smtp.helo()
        except (TokenRefused, TokenUnavailable) as exc:
            with contextlib.suppress(Exception):
                smtp.close()
            sock.close()
            kind: Literal["hold", "retry"] = "hold" if isinstance(exc, TokenRefused) else "retry"
            raise _Failure(
                SmtpOutcome(kind, "login", f"OAuth sign-in to {account.host}: {exc}")
            ) from exc
        except (SMTPException, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                smtp.close()
            sock.close()
            raise _Failure(classify_connect(exc, account)) from exc
        self.connections_opened += 1
        pipeline = Pipeline.take_over(smtp, timeout) if self.settings.smtp_pipelining else None
        return _Connection(smtp, account.fingerprint, time.monotonic(), pipeline)

    async def check(self, account: SmtpAccount) -> SmtpOutcome:
        """Connect and log in now (a settings-page test), without sending anything."""
        try:
            conn = await self._open(account)
        except _Failure as failure:
            return failure.outcome
        await self._quit(conn)
        return SmtpOutcome("sent", "login", "connected and logged in")

    async def transaction(self, account: SmtpAccount, message: Composed) -> SmtpOutcome:
        """Send one message; never raises, except `LeaseLost` when the engine's lease on the
        message passed to another replica while this one waited for a connection."""
        pool = self._pool(account.account)
        async with pool.slots:
            for _round in range(2):
                # The wait for a pooled connection can outlast a starved replica's lease.
                await confirm_lease()
                conn, reused = self._take_idle(pool, account)
                if conn is None:
                    try:
                        conn = await self._open(account)
                    except _Failure as failure:
                        return failure.outcome
                outcome, healthy, stale = await self._send_on(conn, account, message, reused)
                if healthy:
                    conn.last_used = time.monotonic()
                    pool.idle.append(conn)
                else:
                    with contextlib.suppress(Exception):
                        conn.close()
                if not stale:
                    return outcome
            return outcome

    def _take_idle(
        self, pool: _AccountPool, account: SmtpAccount
    ) -> tuple[_Connection | None, bool]:
        limit = time.monotonic() - self.settings.smtp_idle_seconds
        while pool.idle:
            conn = pool.idle.pop()
            if (
                conn.fingerprint == account.fingerprint
                and conn.last_used >= limit
                and conn.is_connected
            ):
                return conn, True
            asyncio.get_running_loop().create_task(self._quit(conn))
        return None, False

    async def _send_on(
        self, conn: _Connection, account: SmtpAccount, message: Composed, reused: bool
    ) -> tuple[SmtpOutcome, bool, bool]:
        """(outcome, connection still usable, worth one retry on a fresh connection)."""
        smtp = conn.smtp
        options: list[str] = []
        encoding = "ascii"
        if message.smtputf8:
            if not smtp.supports_extension("smtputf8"):
                return (
                    SmtpOutcome(
                        "failed",
                        "send",
                        f"{account.host} does not accept internationalised addresses (SMTPUTF8)",
                    ),
                    True,
                    False,
                )
            options.append("SMTPUTF8")
            encoding = "utf-8"
        limit = smtp.esmtp_extensions.get("size", "")
        if limit.isdigit() and int(limit) > 0 and len(message.data) > int(limit):
            return (
                SmtpOutcome(
                    "failed",
                    "send",
                    f"the message is {len(message.data)} bytes; {account.host} accepts at most "
                    f"{limit}",
                ),
                True,
                False,
            )
        pipeline = conn.pipeline
        try:
            if pipeline is not None:  # MAIL, RCPT, DATA in one write: the server waits for data
                await pipeline.envelope(message.envelope_from, message.recipient, options, encoding)
            else:
                await smtp.mail(message.envelope_from, options=options, encoding=encoding)
                await smtp.rcpt(message.recipient, encoding=encoding)
        except SMTPRecipientRefused as exc:
            healthy = await self._reset(conn)
            return (
                _by_code(exc, f"recipient {message.recipient} refused", "send"),
                healthy,
                False,
            )
        except SMTPSenderRefused as exc:
            healthy = await self._reset(conn)
            return _sender_refused(exc, message.envelope_from, account.host), healthy, False
        except SMTPDataError as exc:  # DATA refused (pipelined)
            healthy = await self._reset(conn)
            return _by_code(exc, "message refused", "send"), healthy, False
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            # Nothing was handed over yet: safe to try again at once on a new connection.
            outcome = SmtpOutcome(
                "retry", "send", f"connection to {account.host} lost before sending: {exc}"
            )
            return outcome, False, reused
        except SMTPResponseException as exc:
            healthy = await self._reset(conn)
            return _by_code(exc, "refused", "send"), healthy, False
        try:
            if pipeline is not None:
                response = await pipeline.content(message.data)
            else:
                response = await smtp.data(message.data)
        except SMTPDataError as exc:
            healthy = await self._reset(conn)
            return _by_code(exc, "message refused", "send"), healthy, False
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError, SMTPException) as exc:
            return (
                SmtpOutcome(
                    "ambiguous",
                    "send",
                    f"connection to {account.host} lost while sending the message: {exc}",
                ),
                False,
                False,
            )
        return (
            SmtpOutcome(
                "sent", "send", smtp_status(response.code, response.message), response.code
            ),
            (True),
            False,
        )

    @staticmethod
    async def _reset(conn: _Connection) -> bool:
        try:
            if conn.pipeline is not None:
                await conn.pipeline.rset()
            else:
                await conn.smtp.rset()
            return True
        except Exception:
            return False

    async def _quit(self, conn: _Connection) -> None:
        try:
            quitting = conn.pipeline.quit() if conn.pipeline is not None else conn.smtp.quit()
            await asyncio.wait_for(quitting, 5)
        except Exception:
            with contextlib.suppress(Exception):
                conn.close()

    async def close_idle(self) -> int:
        """Close connections idle for longer than `smtp_idle_seconds`; returns how many."""
        limit = time.monotonic() - self.settings.smtp_idle_seconds
        closing: list[_Connection] = []
        for pool in self._pools.values():
            keep: list[_Connection] = []
            for conn in pool.idle:
                (keep if conn.last_used >= limit and conn.is_connected else closing).append(conn)
            pool.idle = keep
        await asyncio.gather(*(self._quit(c) for c in closing), return_exceptions=True)
        return len(closing)

    async def close(self) -> None:
        """QUIT every idle connection (draining)."""
        closing = [c for pool in self._pools.values() for c in pool.idle]
        for pool in self._pools.values():
            pool.idle = []
        await asyncio.gather(*(self._quit(c) for c in closing), return_exceptions=True)
