"""The pipelined SMTP reader and transaction against a scripted transport: replies split or
joined however the network delivers them, refusals raised as aiosmtplib raises them, and a
server that takes data after refusing the envelope is cut off before anything is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiosmtplib import (
    SMTPDataError,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)

from services.email_gateway.adapters.smtp_pipelining import Pipeline, ReplyReader


class _Transport(asyncio.Transport):
    """Records writes; the test plays the server through `reader()`."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self.protocol: Any = None

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _pipeline() -> tuple[Pipeline, _Transport]:
    transport = _Transport()
    return Pipeline(transport, timeout=5), transport


async def test_replies_joined_or_split_come_out_in_order() -> None:
    reader = ReplyReader(1)
    reader.data_received(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n35")
    reader.data_received(b"4 End data with <CR><LF>.<CR><LF>\r\n250-first\r\n")
    reader.data_received(b"250 second\r\n")
    replies = [await reader.reply() for _ in range(4)]
    assert [r.code for r in replies] == [250, 250, 354, 250]
    assert replies[0].message == "2.1.0 Ok"
    assert replies[3].message == "first\nsecond"


async def test_a_missing_reply_times_out_and_a_lost_connection_raises() -> None:
    reader = ReplyReader(0.01)
    with pytest.raises(SMTPReadTimeoutError):
        await reader.reply()
    reader.connection_lost(None)
    with pytest.raises(SMTPServerDisconnected):
        await reader.reply()


async def test_a_malformed_reply_ends_the_session() -> None:
    reader = ReplyReader(1)
    reader.data_received(b"hello there\r\n")
    with pytest.raises(SMTPResponseException):
        await reader.reply()


async def test_envelope_then_content_in_two_writes() -> None:
    pipeline, transport = _pipeline()
    transport.protocol.data_received(b"250 ok\r\n250 ok\r\n354 go\r\n")
    await pipeline.envelope("front@smile.example", "pat@example.org", ["SMTPUTF8"], "utf-8")
    transport.protocol.data_received(b"250 queued\r\n")
    reply = await pipeline.content(b"Subject: x\n\n.dot\r\nend")
    assert reply.code == 250
    assert transport.written == [
        b"MAIL FROM:<front@smile.example> SMTPUTF8\r\nRCPT TO:<pat@example.org>\r\nDATA\r\n",
        b"Subject: x\r\n\r\n..dot\r\nend\r\n.\r\n",
    ]


@pytest.mark.parametrize(
    ("replies", "error", "code"),
    [
        (b"550 no sender\r\n503 no\r\n503 no\r\n", SMTPSenderRefused, 550),
        (b"250 ok\r\n550 5.1.1 unknown\r\n554 no recipients\r\n", SMTPRecipientRefused, 550),
        (b"250 ok\r\n250 ok\r\n451 try later\r\n", SMTPDataError, 451),
    ],
)
async def test_refusals_read_every_reply_and_raise_as_aiosmtplib(
    replies: bytes, error: type[SMTPResponseException], code: int
) -> None:
    pipeline, transport = _pipeline()
    transport.protocol.data_received(replies + b"250 reset\r\n")
    with pytest.raises(error) as raised:
        await pipeline.envelope("front@smile.example", "pat@example.org", [], "ascii")
    assert raised.value.code == code
    await pipeline.rset()  # paired with its own reply, not a refusal's leftover
    assert transport.written[-1] == b"RSET\r\n" and not transport.closed


async def test_data_accepted_after_a_refused_recipient_closes_without_sending() -> None:
    pipeline, transport = _pipeline()
    transport.protocol.data_received(b"250 ok\r\n550 unknown\r\n354 go ahead\r\n")
    with pytest.raises(SMTPRecipientRefused):
        await pipeline.envelope("front@smile.example", "pat@example.org", [], "ascii")
    assert transport.closed and len(transport.written) == 1
    assert not pipeline.is_connected


async def test_a_connection_lost_before_the_final_reply_raises_disconnected() -> None:
    pipeline, transport = _pipeline()
    transport.protocol.data_received(b"250 ok\r\n250 ok\r\n354 go\r\n")
    await pipeline.envelope("front@smile.example", "pat@example.org", [], "ascii")
    sending = asyncio.ensure_future(pipeline.content(b"hello\r\n"))
    await asyncio.sleep(0)
    transport.protocol.connection_lost(ConnectionResetError())
    with pytest.raises(SMTPServerDisconnected):
        await sending
    with pytest.raises(SMTPServerDisconnected):
        await pipeline.rset()
