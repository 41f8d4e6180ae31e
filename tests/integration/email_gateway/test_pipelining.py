"""SMTP PIPELINING (RFC 2920): where the server offers it, MAIL, RCPT and DATA go in one write
and the message in a second; refusals keep every later reply paired with its command; a
server that does not offer it gets one command at a time; a cut-off after the message went out
stays `ambiguous` (it may have arrived)."""

from __future__ import annotations

from typing import Any

from services.email_gateway.adapters.composer import Composed
from services.email_gateway.adapters.smtp import SmtpAccount, SmtpPool
from services.email_gateway.config import EmailGatewayConfig
from shared.net.outbound import OutboundGuard

# A line starting with a dot must arrive as it was (dot-stuffing), and a lone LF as CRLF.
BODY = b"Dear patient,\r\n.hidden line\r\n..two dots\r\nbare\nline\r\n"


def _letter(n: int, to: str = "patient@example.org") -> Composed:
    data = (
        f"From: front@smile.example\r\nTo: {to}\r\nSubject: Recall {n}\r\n"
        f"Message-ID: <m{n}@smile.example>\r\n\r\n"
    ).encode() + BODY
    return Composed(f"<m{n}@smile.example>", "front@smile.example", to, data, False)


def _pool(**settings: Any) -> SmtpPool:
    config = EmailGatewayConfig(local_hostname="gw.test", **settings)
    return SmtpPool(config, OutboundGuard.parse("127.0.0.1/32"))


def _account(port: int) -> SmtpAccount:
    return SmtpAccount(account="a1", host="127.0.0.1", port=port, security="none")


class _Writes:
    """Counts what a pipelined connection writes (one entry per transport.write)."""

    def __init__(self, pool: SmtpPool) -> None:
        self.chunks: list[bytes] = []
        self.pool = pool

    def watch(self) -> None:
        (conn,) = self.pool._pools["a1"].idle
        assert conn.pipeline is not None, "the server offers PIPELINING: the pipeline sends"
        transport = conn.pipeline.transport
        write = transport.write

        def counted(data: Any) -> None:
            self.chunks.append(bytes(data))
            write(data)

        transport.write = counted  # type: ignore[method-assign]


async def test_pipelined_sends_two_writes_a_message_on_one_connection(smtp_servers) -> None:
    server = smtp_servers()
    pool = _pool()
    account = _account(server.port)
    first = await pool.transaction(account, _letter(0))
    assert first.kind == "sent" and first.code == 250
    writes = _Writes(pool)
    writes.watch()
    for n in (1, 2):
        outcome = await pool.transaction(account, _letter(n))
        assert outcome.kind == "sent", outcome
    await pool.close()
    assert pool.connections_opened == 1
    assert len(writes.chunks) == 2 * 2 + 1, "MAIL+RCPT+DATA, the message, for each; then QUIT"
    envelope = writes.chunks[0]
    assert envelope == (
        b"MAIL FROM:<front@smile.example>\r\nRCPT TO:<patient@example.org>\r\nDATA\r\n"
    )
    assert writes.chunks[-1] == b"QUIT\r\n"
    assert [r.message_id for r in server.received] == [f"<m{n}@smile.example>" for n in range(3)]
    for received in server.received:
        assert received.data is not None
        assert received.data.endswith(
            b"Dear patient,\r\n.hidden line\r\n..two dots\r\nbare\r\nline\r\n"
        )


async def test_refusals_keep_replies_paired_and_the_connection_reused(smtp_servers) -> None:
    def script(stage: str, envelope: Any, data: bytes | None) -> str | None:
        if stage == "rcpt" and data == b"busy@example.org":
            return "450 4.2.1 mailbox busy"
        if stage == "data" and b"Subject: Recall 3" in (data or b""):
            return "554 5.7.1 content refused"
        return None

    server = smtp_servers(reject_recipients=r"^nobody@", script=script)
    pool = _pool()
    account = _account(server.port)
    refused = await pool.transaction(account, _letter(0, "nobody@example.org"))
    assert refused.kind == "failed" and refused.code == 550
    assert "550 5.1.1" in refused.reply and "recipient" in refused.reply
    busy = await pool.transaction(account, _letter(1, "busy@example.org"))
    assert busy.kind == "retry" and busy.code == 450
    sent = await pool.transaction(account, _letter(2))
    assert sent.kind == "sent"
    content = await pool.transaction(account, _letter(3))
    assert content.kind == "failed" and "554 5.7.1" in content.reply
    again = await pool.transaction(account, _letter(4))
    assert again.kind == "sent"
    (conn,) = pool._pools["a1"].idle
    assert conn.pipeline is not None
    await pool.close()
    assert pool.connections_opened == 1, "every refusal left the connection usable"
    assert [r.message_id for r in server.received] == ["<m2@smile.example>", "<m4@smile.example>"]


async def test_a_server_without_pipelining_gets_one_command_at_a_time(smtp_servers) -> None:
    server = smtp_servers(pipelining=False, reject_recipients=r"^nobody@")
    pool = _pool()
    account = _account(server.port)
    assert (await pool.transaction(account, _letter(0))).kind == "sent"
    (conn,) = pool._pools["a1"].idle
    assert conn.pipeline is None and conn.smtp.is_connected
    refused = await pool.transaction(account, _letter(1, "nobody@example.org"))
    assert refused.kind == "failed" and "550 5.1.1" in refused.reply
    assert (await pool.transaction(account, _letter(2))).kind == "sent"
    await pool.close()
    assert pool.connections_opened == 1
    assert [r.message_id for r in server.received] == ["<m0@smile.example>", "<m2@smile.example>"]


async def test_pipelining_can_be_turned_off(smtp_servers) -> None:
    server = smtp_servers()
    pool = _pool(smtp_pipelining=False)
    assert (await pool.transaction(_account(server.port), _letter(0))).kind == "sent"
    (conn,) = pool._pools["a1"].idle
    assert conn.pipeline is None
    await pool.close()


async def test_a_cut_off_after_the_message_is_ambiguous_before_it_a_retry(smtp_servers) -> None:
    drops = {"after_data"}

    def script(stage: str, envelope: Any, data: bytes | None) -> str | None:
        if stage in drops:
            drops.discard(stage)
            return "drop"
        return None

    server = smtp_servers(script=script)
    pool = _pool()
    account = _account(server.port)
    cut = await pool.transaction(account, _letter(0))
    assert cut.kind == "ambiguous", "the server kept it before the connection broke"
    assert [r.message_id for r in server.received] == ["<m0@smile.example>"]
    assert (await pool.transaction(account, _letter(1))).kind == "sent"
    assert pool.connections_opened == 2, "a broken connection is not reused"
    # A connection closed while idle is not taken again: the message goes on a fresh one.
    (conn,) = pool._pools["a1"].idle
    assert conn.pipeline is not None
    conn.pipeline.close()
    assert (await pool.transaction(account, _letter(2))).kind == "sent"
    await pool.close()
    assert pool.connections_opened == 3
    assert [r.message_id for r in server.received][-1] == "<m2@smile.example>"
