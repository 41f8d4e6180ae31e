"""Fuzzing request/reply endpoints (`stagger.rpc.*`) and the SMS gateway's provider webhooks.

Request/reply: a malformed request must be *answered* (a JSON object naming the error), never
left to time out, and the endpoint must answer a valid request afterwards. Webhooks (HTTP, not
bus consumers): an unsigned request is refused with 401 and nothing is stored; a signed body that
cannot be understood is answered 400 and dead-lettered with the reason.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout

from services.email_gateway.composition import EmailGatewayService
from services.sms_gateway.entrypoints.webhooks import CONSUMER as WEBHOOKS
from services.sms_gateway.service import SmsGatewayService
from shared.bus import subjects
from shared.runtime.service import BaseService
from shared.sms_signing import (
    ACCOUNT_HEADER,
    DEV_ACCOUNT,
    DEV_WEBHOOK_SECRET,
    signature_headers,
)
from tests.integration.dispatch.harness import make_site
from tests.integration.hardening.fuzzing import (
    DeadLetters,
    examples,
    in_thread,
    kept_body,
    service_running,
    service_settings,
)
from tests.integration.hardening.malformed import MAX_PAYLOAD, json_values, junk_headers
from tests.support.waiting import wait_until

GROUP, SITE = "g-rpc", "site-rpc"
REQUESTS = 40


# FastStream decodes a request whose content-type says JSON before the handler runs; when the
# body is not JSON nothing would answer. Every endpoint therefore decodes the raw body itself
# (`shared.bus.rpc`), and this test holds each of them to that.
def requests() -> st.SearchStrategy[tuple[dict[str, str] | None, bytes]]:
    """Malformed request bodies, with or without headers claiming JSON."""
    bodies = (
        st.binary(max_size=300)
        | json_values().map(lambda v: json.dumps(v).encode())
        | st.sampled_from([b"", b"{", b"null", b"[]", b'"site"', b"\xff\xfe", b"{\x00}"])
        | st.builds(
            lambda key, value: json.dumps({key: value}).encode(),
            st.sampled_from(["site_id", "group_id", "actor"]),
            json_values(),
        )
        | st.integers(256 * 1024, MAX_PAYLOAD - 4096).map(lambda n: b"[" * n)
    )
    return st.tuples(junk_headers(), bodies)


ENDPOINTS = [
    pytest.param("sms", "queue_depth", id="sms-queue_depth"),
    pytest.param("email", "queue_depth", id="email-queue_depth"),
    pytest.param("sms", "provider_test", id="sms-provider_test"),
    pytest.param("email", "account_status", id="email-account_status"),
    pytest.param("email", "account_test", id="email-account_test"),
]


def gateway(channel: str) -> BaseService:
    return SmsGatewayService() if channel == "sms" else EmailGatewayService()


@pytest.mark.parametrize(("channel", "method"), ENDPOINTS)
async def test_request_reply_endpoints_answer_every_malformed_request(
    nc: Client, nats_url: str, tmp_path: Path, channel: str, method: str
) -> None:
    await make_site(nc, group=GROUP, site=SITE)
    found = await in_thread(lambda: examples(requests(), REQUESTS, f"rpc-{method}"))
    subject = subjects.rpc(f"{channel}_gateway", method)
    async with service_running(gateway(channel), service_settings(nats_url, tmp_path / "var")):
        wrong = []
        for headers, body in found:
            try:
                reply = await nc.request(subject, body, headers=headers, timeout=3)
            except NatsTimeout:
                raise AssertionError(f"no answer to {headers} {body[:80]!r}") from None
            answer = _json(reply.data)
            # An empty request asks with no parameters (queue depth: every site).
            if not isinstance(answer, dict) or (
                body
                and not isinstance(_json(body), dict)
                and not (answer.get("error") or answer.get("ok") is False)
            ):
                wrong.append((body[:60], reply.data[:200]))
        assert not wrong, f"answers without an error: {wrong[:5]}"
        # Still answering properly.
        reply = await nc.request(subject, json.dumps({"site_id": SITE}).encode(), timeout=5)
        assert isinstance(_json(reply.data), dict)


def signed(body: bytes, secret: str = DEV_WEBHOOK_SECRET) -> dict[str, str]:
    # The simulator's default account, whose webhooks its public development secret signs.
    return {
        "content-type": "application/json",
        ACCOUNT_HEADER: DEV_ACCOUNT,
        **signature_headers(secret, body),
    }


def webhook_bodies() -> st.SearchStrategy[tuple[bytes, str]]:
    """Bodies the simulator webhook must refuse, with what the reason must say."""
    receipt = {
        "type": "receipt",
        "account": DEV_ACCOUNT,
        "id": "p-1",
        "reference": "m-1",
        "status": "delivered",
        "occurred_at": "2030-01-01T00:00:00+00:00",
    }
    return st.one_of(
        st.binary(max_size=300).filter(lambda b: _json(b) is None).map(lambda b: (b, "not JSON")),
        json_values()
        .filter(lambda v: not isinstance(v, dict))
        .map(lambda v: (json.dumps(v).encode(), "not a JSON object")),
        st.text(string.ascii_letters, max_size=10).map(
            lambda t: (json.dumps({"type": t}).encode(), "unknown webhook type")
        ),
        st.sampled_from(["account", "id", "reference", "status", "occurred_at"]).map(
            lambda k: (
                json.dumps({**receipt, k: None}).encode(),
                f"field '{k}' must be a non-empty string",
            )
        ),
        st.sampled_from(["yesterday", "2030-01-01T00:00:00"]).map(
            lambda t: (
                json.dumps({**receipt, "occurred_at": t}).encode(),
                "is not an ISO 8601 time|has no time zone",
            )
        ),
    )


async def test_sms_webhooks_refuse_and_dead_letter_malformed_bodies(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group=GROUP, site=SITE, account=DEV_ACCOUNT)
    found = await in_thread(lambda: examples(webhook_bodies(), REQUESTS, "sms-webhooks"))
    settings = service_settings(nats_url, tmp_path / "var")
    url = f"http://127.0.0.1:{settings.sms_gateway_http_port}/webhooks/sms/simulator"
    async with (
        DeadLetters(nc).listening() as letters,
        service_running(SmsGatewayService(), settings),
        httpx.AsyncClient(timeout=10) as http,
    ):
        for body, _ in found[:10]:
            response = await http.post(url, content=body, headers={"X-Sim-Timestamp": "1"})
            assert response.status_code == 401, (body, response.text)
        assert letters.of(WEBHOOKS) == [], "an unsigned request leaves nothing behind"
        for body, _ in found:
            response = await http.post(url, content=body, headers=signed(body))
            assert response.status_code == 400, (body[:80], response.status_code, response.text)
            assert response.json()["error"] == "malformed webhook"

        def all_dead() -> bool:
            return len({kept_body(x) for x in letters.of(WEBHOOKS)}) == len({b for b, _ in found})

        await wait_until(all_dead, timeout=20, message="a dead letter per malformed body")
        by_body = {kept_body(x): x for x in letters.of(WEBHOOKS)}
        for body, reason in found:
            letter = by_body[body]
            assert re.search(reason, letter.reason), (body[:80], letter.reason)
            assert letter.subject == "/webhooks/sms/simulator"
            assert not any("signature" in h.lower() for h in letter.headers), "secrets kept out"
        # Still serving: a well-formed receipt for an unknown message is answered 200.
        good = json.dumps(
            {
                "type": "receipt",
                "account": DEV_ACCOUNT,
                "id": "p-x",
                "reference": "m-unknown",
                "status": "delivered",
                "occurred_at": "2030-01-01T00:00:00+00:00",
            }
        ).encode()
        response = await http.post(url, content=good, headers=signed(good))
        assert response.status_code == 200, response.text


async def test_sms_webhook_refuses_deeply_nested_json(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group=GROUP, site=SITE, account=DEV_ACCOUNT)
    settings = service_settings(nats_url, tmp_path / "var")
    url = f"http://127.0.0.1:{settings.sms_gateway_http_port}/webhooks/sms/simulator"
    # Deep enough to exhaust the parser's recursion, small enough to pass the 64 KiB cap.
    body = b"[" * 60_000
    async with (
        DeadLetters(nc).listening() as letters,
        service_running(SmsGatewayService(), settings),
        httpx.AsyncClient(timeout=10) as http,
    ):
        response = await http.post(url, content=body, headers=signed(body))
        assert response.status_code == 400
        await wait_until(lambda: letters.of(WEBHOOKS), message="its dead letter")


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
