"""SMTP PIPELINING (RFC 2920) on a connection aiosmtplib opened, secured and signed in.

aiosmtplib sends one command and waits for its reply before the next: MAIL, RCPT, DATA and the
message are four round trips, each a wake-up of this process and of the server. Where the
server offers PIPELINING, MAIL, RCPT and DATA go out in one write and their three replies are
read together, then the message and its reply: two round trips. aiosmtplib's reader cannot be
used for that (it parses one reply per command and drops what arrives while no command
waits), so after the login the connection's transport is handed to `ReplyReader`, which keeps
every reply in order. The connection then belongs to `Pipeline` (RSET and QUIT too).

The errors are aiosmtplib's own, raised at the same steps, so a caller classifies both paths
the same way (see `SmtpPool._send_on`): nothing of the message is handed over before DATA's
354 came back, and only the reply to the message's final dot says it was taken.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

import aiosmtplib
from aiosmtplib import (
    SMTPDataError,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPResponse,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

MAX_REPLY_BYTES = 64 * 1024
"""A reply (with its continuation lines) longer than this ends the connection."""


class ReplyReader(asyncio.Protocol):
    """Collects the server's replies in order, however many arrive in one read."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._buffer = bytearray()
        self._replies: collections.deque[SMTPResponse] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.lost: Exception | None = None

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        try:
            self._parse()
        except SMTPResponseException as exc:
            self._end(exc)
            return
        self._wake()

    def _parse(self) -> None:
        buffer = self._buffer
        start = 0
        while True:
            lines: list[bytes] = []
            code = -1
            end = start
            complete = False
            while True:
                newline = buffer.find(b"\n", end)
                if newline == -1:
                    break
                line = bytes(buffer[end : newline + 1])
                end = newline + 1
                if not line[:3].isdigit():
                    raise SMTPResponseException(-1, "malformed SMTP reply")
                if not lines:
                    code = int(line[:3])
                lines.append(line[4:].strip(b" \t\r\n"))
                if line[3:4] != b"-":
                    complete = True
                    break
            if not complete:
                break
            text = b"\n".join(lines).decode("utf-8", "surrogateescape")
            self._replies.append(SMTPResponse(code, text))
            start = end
        del buffer[:start]
        if len(buffer) > MAX_REPLY_BYTES:
            raise SMTPResponseException(-1, "SMTP reply too long")

    def eof_received(self) -> bool:
        self._end(SMTPServerDisconnected("Unexpected EOF received"))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        lost = SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self._end(lost)

    def _end(self, exc: Exception) -> None:
        if self.lost is None:
            self.lost = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def reply(self) -> SMTPResponse:
        """The next reply in order, waiting at most `timeout` for it (raises
        SMTPServerDisconnected, SMTPReadTimeoutError)."""
        while not self._replies:
            if self.lost is not None:
                raise self.lost
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self.timeout):
                    await self._waiter
            except TimeoutError as exc:
                raise SMTPReadTimeoutError("Timed out waiting for server response") from exc
            finally:
                self._waiter = None
        return self._replies.popleft()


class Pipeline:
    """One signed-in connection sending with PIPELINING."""

    def __init__(self, transport: asyncio.Transport, timeout: float | None) -> None:
        self.transport = transport
        self.reader = ReplyReader(timeout)
        transport.set_protocol(self.reader)

    @classmethod
    def take_over(cls, smtp: aiosmtplib.SMTP, timeout: float | None) -> Pipeline | None:
        """The connection's pipeline when the server offers PIPELINING, else None (it stays
        aiosmtplib's, one command at a time)."""
        transport = smtp.transport
        if not smtp.supports_extension("pipelining") or not isinstance(
            transport, asyncio.Transport
        ):
            return None
        return cls(transport, timeout)

    @property
    def is_connected(self) -> bool:
        """False once the server closed the connection or it was closed here."""
        return self.reader.lost is None and not self.transport.is_closing()

    def _write(self, data: bytes) -> None:
        if not self.is_connected:
            raise self.reader.lost or SMTPServerDisconnected("Connection lost")
        self.transport.write(data)

    async def envelope(
        self, sender: str, recipient: str, options: Sequence[str], encoding: str
    ) -> None:
        """MAIL, RCPT and DATA in one write, then their three replies. Raises what aiosmtplib's
        mail/rcpt/data would (SMTPSenderRefused, SMTPRecipientRefused, SMTPDataError, lost
        connection, timeout); on return the server waits for the message."""
        mail = b" ".join(
            [b"MAIL FROM:" + quote_address(sender).encode(encoding)]
            + [o.encode("ascii") for o in options]
        )
        rcpt = b"RCPT TO:" + quote_address(recipient).encode(encoding)
        self._write(mail + b"\r\n" + rcpt + b"\r\nDATA\r\n")
        # Every reply is read, refusals included, so the next command is paired with its own.
        mailed = await self.reader.reply()
        rcpted = await self.reader.reply()
        data = await self.reader.reply()
        refused: SMTPResponseException | None = None
        if mailed.code != 250:
            refused = SMTPSenderRefused(mailed.code, mailed.message, sender)
        elif rcpted.code not in (250, 251):
            refused = SMTPRecipientRefused(rcpted.code, rcpted.message, recipient)
        elif data.code != 354:
            refused = SMTPDataError(data.code, data.message)
        if refused is None:
            return
        if data.code == 354:
            # The server takes a message although the envelope was refused (RFC 2920 says it
            # must not). Closing mid-DATA abandons the transaction; nothing had a recipient.
            self.transport.close()
        raise refused

    async def content(self, message: bytes) -> SMTPResponse:
        """The message (dot-stuffed, CRLF line ends) and the reply to its final dot."""
        data = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message))
        self._write(data + b".\r\n")
        reply = await self.reader.reply()
        if reply.code != 250:
            raise SMTPDataError(reply.code, reply.message)
        return reply

    async def command(self, line: bytes) -> SMTPResponse:
        """One command and its reply (RSET, QUIT, NOOP)."""
        self._write(line + b"\r\n")
        return await self.reader.reply()

    async def rset(self) -> None:
        """RSET; raises when the server does not answer 250."""
        reply = await self.command(b"RSET")
        if reply.code != 250:
            raise SMTPResponseException(reply.code, reply.message)

    async def quit(self) -> None:
        """QUIT, then close."""
        try:
            await self.command(b"QUIT")
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection now."""
        if not self.transport.is_closing():
            self.transport.close()
