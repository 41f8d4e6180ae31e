"""The fast header parser returns exactly what nats-py's own parser returns."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from shared.bus.headers import parse_header_lines, use_fast_headers

# Header blocks built from lines that stress every rule: colons, odd whitespace (ASCII and
# Unicode, around and inside names), non-ASCII names, invalid UTF-8, empty names and values.
_pieces = st.sampled_from(
    [
        b"ce-id",
        b"Nats-Msg-Id",
        b":",
        b": ",
        b" ",
        b"\t",
        b"\x0b",
        b"\x1c",
        b"\xc2\xa0",
        b"\xc3\xa9",
        b"\xff",
        b"\xe2\x82",
        b"value",
        b"a b",
        b"\x00",
        b"\n",
        b"\r",
        b"",
    ]
)
_line = st.lists(_pieces, max_size=8).map(b"".join)
_block = st.lists(_line, max_size=12).map(lambda lines: b"\r\n".join(lines) + b"\r\n\r\n")


@settings(max_examples=2000)
@given(_block)
def test_same_result_as_nats_py(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


@given(st.binary(max_size=200))
def test_same_result_on_arbitrary_bytes(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_a_cloudevent_block() -> None:
    raw = (
        b"ce-type: stagger.dispatch.sent.v1\r\nce-subject:  m-1 \r\n"
        b"ce-actor: service:sms_gateway\r\nbad name: x\r\n\r\n"
    )
    assert parse_header_lines(raw) == {
        "ce-type": "stagger.dispatch.sent.v1",
        "ce-subject": "m-1",
        "ce-actor": "service:sms_gateway",
    }


def test_installed_on_one_connection_only() -> None:
    ours, theirs = Client(), Client()
    use_fast_headers(ours)
    assert ours._parse_header_lines is parse_header_lines
    assert theirs._parse_header_lines is not parse_header_lines
