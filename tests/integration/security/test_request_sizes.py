"""Request bodies over the config service's cap get 413 before anything reads past the cap.

The client here is a raw socket, so the test controls exactly how many body bytes exist: it sends
the headers and at most the cap plus one chunk, then waits for the answer. A server that tried
to read the whole (much larger) body would wait for bytes that never come, and the test fails
on its read timeout instead of seeing the 413.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.integration.config.conftest import ConfigHarness, config_running

CAP = 64 * 1024
CHUNK = 16 * 1024
ANSWER_SECONDS = 20.0


@pytest.fixture(scope="module")
async def capped(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ConfigHarness]:
    async with config_running(
        nats_url, tmp_path_factory.mktemp("capped-var"), STAGGER_API_MAX_BODY_BYTES=str(CAP)
    ) as harness:
        yield harness


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response (Content-Length framed)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_SECONDS)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(
        reader.readexactly(int(headers.get("content-length", "0"))), ANSWER_SECONDS
    )
    return status, headers, body


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return await asyncio.open_connection(parts.hostname, parts.port)


def _head(method: str, path: str, extra: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: stagger.test",
        *[f"{k}: {v}" for k, v in extra.items()],
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _assert_refused(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413, (status, body[:300])
    assert headers["content-type"].startswith("application/problem+json")
    assert headers.get("connection") == "close"
    problem = json.loads(body)
    assert problem["status"] == 413
    assert str(CAP) in problem["detail"]


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/sites/s-any/messages", "application/json"),
        ("/console/login", "application/x-www-form-urlencoded"),
        ("/u/some-unsubscribe-token", "application/x-www-form-urlencoded"),
    ],
)
async def test_a_declared_length_over_the_cap_is_refused_before_any_body_is_sent(
    capped: ConfigHarness, path: str, content_type: str
) -> None:
    reader, writer = await _open(capped.url)
    try:
        # Ten times the cap announced, not one byte of it sent: only an answer that reads
        # nothing can arrive.
        writer.write(
            _head(
                "POST",
                path,
                {"Content-Type": content_type, "Content-Length": str(10 * CAP)},
            )
        )
        await writer.drain()
        _assert_refused(*await _answer(reader))
    finally:
        writer.close()


async def _chunks_until_answer(
    capped: ConfigHarness, path: str, content_type: str, extra: dict[str, str]
) -> tuple[int, dict[str, str], bytes, int]:
    """Stream chunks of a body meant to be 100 times the cap; stop one chunk past the cap and
    wait for the answer. Returns the answer and how many body bytes were ever sent."""
    reader, writer = await _open(capped.url)
    sent = 0
    try:
        writer.write(
            _head(
                "POST",
                path,
                {"Content-Type": content_type, "Transfer-Encoding": "chunked", **extra},
            )
        )
        filler = b"a" * CHUNK
        while sent <= CAP:
            writer.write(f"{len(filler):x}\r\n".encode() + filler + b"\r\n")
            sent += len(filler)
        await writer.drain()
        status, headers, body = await _answer(reader)
        # The connection is closed after the refusal: the unread rest is never read.
        assert await asyncio.wait_for(reader.read(), ANSWER_SECONDS) == b""
        return status, headers, body, sent
    finally:
        writer.close()


async def test_a_streamed_submission_is_refused_once_it_passes_the_cap(
    capped: ConfigHarness,
) -> None:
    group_id = await capped.create_group()
    admin = await capped.token(group_id, "group_admin")
    site = await capped.create_site(admin, group_id)
    status, headers, body, sent = await _chunks_until_answer(
        capped,
        f"/api/v1/sites/{site['site_id']}/messages",
        "application/json",
        {"Authorization": f"Bearer {admin}"},
    )
    _assert_refused(status, headers, body)
    assert sent <= CAP + CHUNK

    # The service goes on: a submission under the cap is taken as usual.
    async with capped.client(admin) as client:
        response = await client.post(
            f"/api/v1/sites/{site['site_id']}/messages",
            json={"channel": "sms", "messages": [{"to": "+447700900123", "body": "Hello"}]},
        )
    # The site has no SMS provider: refused as invalid (422), which needed the body parsed.
    assert response.status_code == 422, response.text


async def test_a_streamed_console_form_is_refused_once_it_passes_the_cap(
    capped: ConfigHarness,
) -> None:
    status, headers, body, sent = await _chunks_until_answer(
        capped, "/console/login", "application/x-www-form-urlencoded", {}
    )
    _assert_refused(status, headers, body)
    assert sent <= CAP + CHUNK
