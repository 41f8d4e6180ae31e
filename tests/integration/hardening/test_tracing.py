"""Tracing: one trace from the HTTP submission through the outbox and the queue to the send.

The config service and a gateway engine (with a fake provider) run in this process against the
session's NATS, with an in-memory span exporter installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError

from services.config.composition import ConfigService
from services.config.handlers import submission
from shared import tracing
from shared.config import StaggerConfig
from shared.dispatch.adapter import SendResult
from shared.runtime.nats_server import free_port
from shared.runtime.service import running
from shared.secrets import generate_key
from shared.tokens import issue_token
from tests.integration.dispatch.harness import (
    SMS_TABLES,
    FakeAdapter,
    FakeProvider,
    config_handlers,
    engine_running,
    make_site,
    send_tick,
)
from tests.support.waiting import wait_until

CALLER_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN = 0x00F067AA0BA902B7
CALLER_TRACEPARENT = f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test, every finished span kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def by_message(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {str(s.attributes["stagger.message_id"]): s for s in spans}


@contextlib.asynccontextmanager
async def config_running(nats_url: str, var_dir: Path) -> AsyncIterator[str]:
    settings = StaggerConfig(
        nats_url=nats_url,
        var_dir=var_dir,
        http_port=free_port(),
        secret_key=generate_key(),
        heartbeat_seconds=0.5,
        drain_timeout_seconds=5,
        sms_simulator_enabled=True,
    )
    async with running(ConfigService(), settings):
        yield f"http://127.0.0.1:{settings.http_port}"


async def stored_traceparents(service) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    m = SMS_TABLES.messages
    async with service.engine.queue.db() as session:
        rows = await session.execute(sa.select(m.c.message_id, m.c.traceparent))
        return {r.message_id: r.traceparent for r in rows}


async def test_http_submission_and_provider_send_share_one_trace(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    await make_site(nc, group="g-trace", site="site-t")
    _, token = await issue_token(nc, group_id="g-trace", role="group_admin", label="trace")
    provider = FakeProvider()
    async with (
        engine_running(nats_url, database_url, tmp_path / "gw", FakeAdapter(provider)) as gateway,
        config_running(nats_url, tmp_path / "config") as url,
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http,
    ):
        await wait_until(
            lambda: _status(http, "/api/v1/me", 200), timeout=20, message="the token is known"
        )
        response = await http.post(
            "/api/v1/sites/site-t/messages",
            json={
                "channel": "sms",
                "messages": [
                    {"to": f"+4477009{i:05d}", "body": f"hello {i}", "idempotency_key": f"t-{i}"}
                    for i in range(3)
                ],
            },
            headers={"traceparent": CALLER_TRACEPARENT, "tracestate": "vendor=1"},
        )
        assert response.status_code == 202, response.text
        ids = [m["message_id"] for m in response.json()["messages"]]
        await wait_until(
            lambda: _all_stored(gateway, ids), timeout=30, message="messages in the queue"
        )
        await send_tick(nc, "site-t", budget=10)
        await wait_until(
            lambda: len(named(spans, tracing.SEND)) == 3, timeout=20, message="three send spans"
        )

    (submit,) = named(spans, tracing.SUBMIT)
    intakes = by_message(named(spans, tracing.INTAKE))
    sends = by_message(named(spans, tracing.SEND))
    assert set(intakes) == set(sends) == set(ids)

    # The caller's trace continues through the whole path.
    assert submit.context.trace_id == CALLER_TRACE
    assert submit.parent is not None and submit.parent.span_id == CALLER_SPAN
    assert submit.kind is SpanKind.SERVER
    assert submit.attributes["stagger.site_id"] == "site-t"
    assert submit.attributes["stagger.messages"] == 3
    for message_id in ids:
        intake, send = intakes[message_id], sends[message_id]
        assert intake.context.trace_id == send.context.trace_id == CALLER_TRACE
        assert intake.parent is not None and intake.parent.span_id == submit.context.span_id
        assert intake.parent.is_remote, "the intake continues a context carried by NATS headers"
        assert send.parent is not None and send.parent.span_id == intake.context.span_id
        assert send.kind is SpanKind.CLIENT
        assert send.attributes["stagger.site_id"] == "site-t"
        assert send.attributes["stagger.channel"] == "sms"
        assert send.attributes["stagger.outcome"] == "sent"
        assert send.attributes["stagger.provider_message_id"] == f"p-{message_id}"
        assert send.status.status_code is not StatusCode.ERROR
        # The send happened after the intake span ended: the context survived the queue.
        assert intake.end_time is not None and send.start_time is not None
        assert send.start_time >= intake.end_time


async def test_provider_errors_are_recorded_on_the_send_span(
    nc: Client, nats_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    await make_site(nc, group="g-err", site="site-e")
    provider = FakeProvider()
    adapter = FakeAdapter(provider)
    database = f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"
    async with engine_running(nats_url, database, tmp_path, adapter) as gateway:
        handlers = config_handlers(nc)
        site = await handlers.site("site-e")
        body = submission.SubmissionIn.model_validate(
            {
                "channel": "sms",
                "messages": [
                    {"to": "+447700900001", "body": "refused", "idempotency_key": "e-1"},
                    {"to": "+447700900002", "body": "crashes", "idempotency_key": "e-2"},
                ],
            }
        )
        refused, crashing = (a.message_id for a in await submission.submit(nc, site, body, "t"))
        provider.script[refused] = [SendResult("failed", error="invalid number")]

        original = adapter.send

        async def send(claimed, site):  # type: ignore[no-untyped-def]
            if claimed.message_id == crashing:
                raise RuntimeError("adapter bug")
            return await original(claimed, site)

        adapter.send = send  # type: ignore[method-assign]
        await wait_until(
            lambda: _all_stored(gateway, [refused, crashing]), timeout=30, message="queued"
        )
        await send_tick(nc, "site-e", budget=10)
        await wait_until(
            lambda: len(named(spans, tracing.SEND)) >= 2, timeout=20, message="two send spans"
        )

    sends = by_message(named(spans, tracing.SEND))
    (submit,) = named(spans, tracing.SUBMIT)
    assert sends[refused].context.trace_id == submit.context.trace_id
    assert sends[refused].status.status_code is StatusCode.ERROR
    assert sends[refused].status.description == "invalid number"
    assert sends[refused].attributes["stagger.outcome"] == "failed"
    assert sends[crashing].status.status_code is StatusCode.ERROR
    exceptions = [e for e in sends[crashing].events if e.name == "exception"]
    assert exceptions and exceptions[0].attributes["exception.message"] == "adapter bug"


async def test_dead_lettered_intake_is_an_error_span(
    nc: Client, nats_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """A submission whose message the gateway refuses shows the refusal in its trace."""
    await make_site(nc, group="g-dl", site="site-d")
    database = f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"
    async with engine_running(nats_url, database, tmp_path, FakeAdapter(FakeProvider())):
        handlers = config_handlers(nc)
        site = await handlers.site("site-d")
        # The gateway's directory says site-d is in g-dl; forge a batch naming another group.
        forged = dataclasses.replace(site, group_id="g-other")
        body = submission.SubmissionIn.model_validate(
            {"channel": "sms", "messages": [{"to": "+447700900001", "body": "x"}]}
        )
        (accepted,) = await submission.submit(nc, forged, body, "t")
        await wait_until(
            lambda: named(spans, tracing.INTAKE), timeout=20, message="the intake span"
        )
    (intake,) = named(spans, tracing.INTAKE)
    (submit,) = named(spans, tracing.SUBMIT)
    assert intake.context.trace_id == submit.context.trace_id
    assert intake.attributes["stagger.message_id"] == accepted.message_id
    assert intake.status.status_code is StatusCode.ERROR
    assert "is not in group g-other" in (intake.status.description or "")


async def test_tracing_off_adds_no_header_and_stores_no_context(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    assert not tracing.enabled()
    await make_site(nc, group="g-off", site="site-o")
    database = f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"
    async with engine_running(nats_url, database, tmp_path, FakeAdapter(FakeProvider())) as gw:
        handlers = config_handlers(nc)
        site = await handlers.site("site-o")
        body = submission.SubmissionIn.model_validate(
            {"channel": "sms", "messages": [{"to": "+447700900001", "body": "x"}]}
        )
        _, outgoing = submission.validate(site, body, "t")
        assert all(tracing.TRACEPARENT not in (m.headers or {}) for m in outgoing)
        (accepted,) = await submission.submit(nc, site, body, "t")
        await wait_until(lambda: _all_stored(gw, [accepted.message_id]), message="queued")
        assert (await stored_traceparents(gw))[accepted.message_id] is None
    assert tracing.span("x") is tracing.span("y"), "off: one shared no-op, nothing allocated"


def test_tracing_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAGGER_TRACING", raising=False)
    assert tracing.TracingConfig().tracing == "off"
    monkeypatch.setenv("STAGGER_TRACING", " Console ")
    assert tracing.TracingConfig().tracing == "console"
    monkeypatch.setenv("STAGGER_TRACING", "jaeger")
    with pytest.raises(ValidationError):
        tracing.TracingConfig()
    monkeypatch.setenv("STAGGER_TRACING", "off")
    assert tracing.configure("config") is None
    assert not tracing.enabled()


def test_console_tracing_exports_spans(capfd: pytest.CaptureFixture[str]) -> None:
    provider = tracing.configure("scheduler", instance="replica-9", mode="console")
    try:
        assert provider is not None and tracing.enabled()
        assert provider.resource.attributes["service.name"] == "stagger-scheduler"
        assert provider.resource.attributes["service.instance.id"] == "replica-9"
        with tracing.span("stagger.test") as span:
            headers: dict[str, str] = {}
            tracing.inject(headers)
            assert headers[tracing.TRACEPARENT] == tracing.traceparent_of(span)
    finally:
        tracing.shutdown()
    assert not tracing.enabled()
    assert '"name": "stagger.test"' in capfd.readouterr().out


def test_otlp_without_its_exporter_warns_once_and_stays_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    module = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    if importlib.util.find_spec("opentelemetry.exporter") is not None:
        monkeypatch.setitem(sys.modules, module, None)  # make the import fail
    with caplog.at_level(logging.WARNING, logger="shared.tracing"):
        assert tracing.configure("sms_gateway", mode="otlp") is None
    assert not tracing.enabled()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "opentelemetry-exporter-otlp-proto-http" in warnings[0].getMessage()
    assert "tracing is off" in warnings[0].getMessage()


async def _status(http: httpx.AsyncClient, path: str, code: int) -> bool:
    return (await http.get(path)).status_code == code


async def _all_stored(service, ids: list[str]) -> bool:  # type: ignore[no-untyped-def]
    stored = await stored_traceparents(service)
    return all(i in stored for i in ids)
