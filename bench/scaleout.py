"""Scale-out benchmarks: does a second gateway replica add throughput?

- sms.scaleout: messages/s from the outbox to the SMS provider simulator through two SMS
  gateway processes sharing one PostgreSQL database, beside (baseline) the same through one of
  them. The simulator answers each send after 50 ms, as real providers take tens of
  milliseconds: each replica's sends in flight (`PARALLEL_SENDS`) bound its rate, not the CPU.
  `SITES` sites in immediate mode, each on its own simulator account, so the account ticks
  (one per account a second, as the scheduler publishes them) are shared out between the
  replicas by the TICKS work queue.
- email.scaleout: the same for the email gateway, with the project's SMTP sink answering each
  message after 50 ms; `SITES` sites each with their own SMTP login (one account each), a
  send-now tick per site every 0.25 s.

value = rate with two replicas, baseline = rate with one, ratio = value ÷ baseline (2.0 is
perfect scaling). Rounds alternate: one replica, then the second started and both measured,
then the second stopped again. Both need PostgreSQL on 127.0.0.1:5432 (replicas share a
database); without it each is skipped with the reason printed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import sqlalchemy as sa
from nats.aio.client import Client

from bench.harness import Result, rate
from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, validate
from services.scheduler.adapters.issuing import account_tick
from services.scheduler.domain.planning import AccountTerms, Slot
from services.sms_gateway.adapters.tables import DISPATCH
from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import SETTINGS, ensure_streams
from shared.db.engine import create_engine
from shared.domain.accounts import sms_account_id
from shared.domain.site_settings import SmsProvider
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.ticks import TickIssued
from shared.eventstore import EventStore
from shared.runtime.nats_server import free_port, port_open
from shared.secrets import SecretBox, generate_key
from tests.integration.sms_provider_sim.harness import SimProcess
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ServiceProcess, service_env, start_service

ADMIN_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ANSWER_MS = 50
SITES = 16
PER_SITE = 50
MESSAGES = SITES * PER_SITE
PARALLEL_SENDS = 4
"""Sends in flight per SMS replica: at 50 ms an answer, at most 80 messages/s each."""
RATE = 1000.0
ROUNDS = 3
M = DISPATCH.messages
SMS_GROUP = "scale-sms"
MAIL_GROUP = "scale-mail"
BODY = "Dear patient, your check-up is due. Reply YES to book or call us on 0123 456 789."


def postgres_missing() -> str | None:
    """Why the scale-out benchmarks cannot run here, or None."""
    if not port_open(5432):
        return "no PostgreSQL on 127.0.0.1:5432 (replicas must share a database)"
    return None


async def _until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark step did not finish: {what}")
        await asyncio.sleep(0.05)


class Replicas:
    """One gateway replica always running, a second one started and stopped between rounds."""

    def __init__(self, service: str, env: dict[str, str], port_var: str, var: Path) -> None:
        self.service = service
        self.env = env
        self.port_var = port_var
        self.var = var
        self.first: ServiceProcess | None = None
        self.second: ServiceProcess | None = None

    async def start_first(self) -> None:
        self.first = await asyncio.to_thread(start_service, self.service, self._env("one"))

    async def start_second(self) -> None:
        self.second = await asyncio.to_thread(start_service, self.service, self._env("two"))

    async def stop_second(self) -> None:
        if self.second is not None:
            await asyncio.to_thread(self.second.stop)
            self.second = None

    async def stop(self) -> None:
        await self.stop_second()
        if self.first is not None:
            await asyncio.to_thread(self.first.stop)

    def _env(self, name: str) -> dict[str, str]:
        # Same database and NATS, own var directory and ports.
        env = {**self.env, "STAGGER_VAR_DIR": str(self.var / name)}
        env[self.port_var] = str(free_port())
        return env


async def alternate_replicas(
    replicas: Replicas, measure: Callable[[], Awaitable[float]], rounds: int = ROUNDS
) -> tuple[float, float, list[float], list[float]]:
    """Medians of (two replicas, one replica) over alternating rounds, and every sample."""
    one: list[float] = []
    two: list[float] = []
    await measure()  # warm: connections, caches, the database's first pages
    for _ in range(rounds):
        one.append(await measure())
        await replicas.start_second()
        try:
            two.append(await measure())
        finally:
            await replicas.stop_second()
    return statistics.median(two), statistics.median(one), two, one


# --- SMS --------------------------------------------------------------------------------------


class SmsScaleout:
    """Simulator with latency, `SITES` immediate-mode sites on their own accounts."""

    def __init__(self, nats_url: str, var: Path, database_url: str) -> None:
        self.nats_url = nats_url
        self.var = var
        self.database_url = database_url
        self.key = generate_key()
        self.sim = SimProcess(var / "sim.log", STAGGER_LOG_LEVEL="WARNING")
        self.http = httpx.AsyncClient(trust_env=False, timeout=30)
        self.sites: list[Any] = []
        self.accounts: list[tuple[str, str]] = []  # (simulator account, tick account)
        self.round = 0

    async def start(self) -> None:
        self.nc = await nats.connect(self.nats_url)
        await ensure_streams(self.nc.jetstream())
        await self.sim.start()
        faults = {"latency_ms": [ANSWER_MS, ANSWER_MS]}
        response = await self.http.put(f"{self.sim.url}/v1/admin/faults", json=faults)
        assert response.status_code < 300, response.text
        box = SecretBox([self.key.encode()])
        handlers = ConfigHandlers(
            self.nc, SettingsStore(EventStore(self.nc, SETTINGS)), box, None, simulator_enabled=True
        )
        await handlers.create_group(SMS_GROUP, "Bench SMS", {}, actor="bench")
        for i in range(SITES):
            name, key = f"scale-{i}-{secrets.token_hex(3)}", secrets.token_hex(12)
            response = await self.http.put(
                f"{self.sim.url}/v1/admin/accounts/{name}",
                json={"api_key": key, "credits": 1_000_000, "rate_per_second": 100_000},
            )
            assert response.status_code == 201, response.text
            provider = {
                "kind": "simulator",
                "account_id": name,
                "secret": key,
                "base_url": self.sim.url,
                "rate_per_second": RATE,
            }
            site = await handlers.create_site(
                SMS_GROUP,
                f"scale-{i}",
                {"name": f"scale-{i}", "timezone": "UTC"},
                # Quiet hours all but one minute of the day: the guard runs, it does not wait.
                {
                    "sms": {
                        "provider": provider,
                        "mode": "immediate",
                        "sender_id": "Bench",
                        "quiet_hours": {"start": "00:00", "end": "23:59"},
                    }
                },
                actor="bench",
            )
            account = sms_account_id(
                SmsProvider.model_validate({**provider, "secret": None}), SMS_GROUP
            )
            assert account is not None
            self.sites.append(site)
            self.accounts.append((name, account))
        env = service_env(
            self.nats_url,
            self.var,
            self.database_url,
            extra={
                "STAGGER_SECRET_KEY": self.key,
                "STAGGER_LOG_LEVEL": "WARNING",
                "STAGGER_SMS_GATEWAY_PARALLEL_SENDS": str(PARALLEL_SENDS),
                # A worker per account tick: an account tick finding its queue empty waits out
                # its second for arrivals, holding a worker, so with the default 8 workers the
                # ticks of accounts 9-16 (published after the first 8) expired unserved.
                "STAGGER_SMS_GATEWAY_TICK_WORKERS": str(2 * SITES),
            },
        )
        self.replicas = Replicas("sms_gateway", env, "STAGGER_SMS_GATEWAY_HTTP_PORT", self.var)
        self.db = create_engine(self.database_url)
        await self.replicas.start_first()

    async def stop(self) -> None:
        await self.replicas.stop()
        await self.db.dispose()
        self.sim.terminate()
        await self.http.aclose()
        await self.nc.close()

    async def sent(self) -> int:
        """Messages the replicas have recorded sent (asked of the database, not of the
        simulator: polling its admin API would take its time from the sends)."""
        async with self.db.connect() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count()).select_from(M).where(M.c.state == "sent")
            )
        return int(count or 0)

    async def measure(self) -> float:
        """Publish `MESSAGES` over the sites; the rate until every one is recorded sent."""
        self.round += 1
        outgoing: list[Outgoing] = []
        for site in self.sites:
            body = SubmissionIn.model_validate(
                {
                    "channel": "sms",
                    "messages": [
                        {
                            "to": f"+614{i:08d}",
                            "body": BODY,
                            "idempotency_key": f"{self.round}-{site.site_id}-{i}",
                        }
                        for i in range(PER_SITE)
                    ],
                }
            )
            outgoing += validate(site, body, "bench")[1]
        before = await self.sent()
        started = time.perf_counter()
        ticking = asyncio.create_task(self._ticks())
        try:
            await publisher_for(self.nc).publish_all(outgoing)

            async def all_sent() -> bool:
                return await self.sent() - before >= MESSAGES

            await _until(all_sent, 300, "every SMS sent")
            return rate(MESSAGES, started)
        finally:
            ticking.cancel()

    async def _ticks(self) -> None:
        """Account ticks for every account each second, as the scheduler publishes them."""
        publisher = publisher_for(self.nc)
        period = timedelta(seconds=1)
        while True:
            at = datetime.now(UTC)
            ticks = [
                account_tick(
                    account,
                    AccountTerms((site.site_id,), SMS_GROUP, int(RATE), 1 / RATE, "bench"),
                    Slot(at, at + period),
                )
                for site, (_, account) in zip(self.sites, self.accounts, strict=True)
            ]
            await publisher.publish_all(ticks)
            await asyncio.sleep(period.total_seconds())


async def sms_scaleout(nats_url: str) -> list[Result]:
    missing = postgres_missing()
    if missing:
        print(f"   sms.scaleout skipped: {missing}", flush=True)
        return []
    database_url = await create_database(ADMIN_PG, f"stagger_bench_sms_scale_{os.getpid()}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench = SmsScaleout(nats_url, Path(tmp), database_url)
            await bench.start()
            try:
                two, one, two_all, one_all = await alternate_replicas(bench.replicas, bench.measure)
            finally:
                await bench.stop()
    finally:
        await drop_database(ADMIN_PG, database_url)
    return [
        Result(
            "sms.scaleout",
            "messages/s",
            two,
            one,
            notes=f"{MESSAGES} SMS a round over {SITES} immediate-mode sites, each on its own "
            f"simulator account (account ticks every 1 s), outbox → SMS gateway replicas on one "
            f"PostgreSQL database → simulator answering each send after {ANSWER_MS} ms, "
            f"{PARALLEL_SENDS} sends in flight per replica (≤ {PARALLEL_SENDS * 1000 // ANSWER_MS}"
            f"/s each), {2 * SITES} tick workers per replica (every account waits for arrivals: "
            f"see docs/operations.md); value: two replicas, baseline: one, "
            f"median of {ROUNDS} alternating rounds",
            extra={
                "rounds_two_replicas": [round(v, 1) for v in two_all],
                "rounds_one_replica": [round(v, 1) for v in one_all],
            },
        )
    ]


# --- email ------------------------------------------------------------------------------------


def _serve(port: int, counter: Any, ready: Any) -> None:
    """The SMTP server process: the project's sink answering after 50 ms, keeping nothing."""
    from services.smtp_sink.composition import build_server
    from services.smtp_sink.config import SinkConfig

    async def main() -> None:
        config = SinkConfig(port=port, store=False, reply_delay_seconds=ANSWER_MS / 1000)
        server = build_server(config, None)

        def count(_: Any) -> None:
            with counter.get_lock():
                counter.value += 1
            server.handler.received.clear()  # keep memory flat

        server.handler.listeners.append(count)
        await server.start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


class EmailScaleout:
    """An SMTP sink with a 50 ms answer, `SITES` sites each with its own SMTP login."""

    def __init__(self, nats_url: str, var: Path, database_url: str) -> None:
        self.nats_url = nats_url
        self.var = var
        self.database_url = database_url
        self.key = generate_key()
        self.sites: list[Any] = []

    async def start(self) -> None:
        self.nc: Client = await nats.connect(self.nats_url)
        await ensure_streams(self.nc.jetstream())
        self.port = free_port()
        context = multiprocessing.get_context("spawn")
        self.counter = context.Value("q", 0)
        ready = context.Event()
        self.server = context.Process(
            target=_serve, args=(self.port, self.counter, ready), daemon=True
        )
        self.server.start()
        await asyncio.to_thread(ready.wait, 30)
        handlers = ConfigHandlers(
            self.nc,
            SettingsStore(EventStore(self.nc, SETTINGS)),
            SecretBox([self.key.encode()]),
            None,
        )
        await handlers.create_group(MAIL_GROUP, "Bench email", {}, actor="bench")
        for i in range(SITES):
            email = {
                "enabled": True,
                "address": f"front{i}@smile.example",
                "display_name": "Smile Dental",
                # Its own login: its own account, so sites' ticks spread over the replicas.
                "smtp": {
                    "host": "127.0.0.1",
                    "port": self.port,
                    "security": "none",
                    "username": f"front{i}@smile.example",
                },
                "mode": "manual",
                "per_minute": 0,
                "provider_preset": "custom",
            }
            site = await handlers.create_site(
                MAIL_GROUP, f"mail-{i}", {"name": f"mail-{i}"}, {"email": email}, actor="bench"
            )
            self.sites.append(site)
        env = service_env(
            self.nats_url,
            self.var,
            self.database_url,
            extra={
                "STAGGER_SECRET_KEY": self.key,
                "STAGGER_LOG_LEVEL": "WARNING",
                "STAGGER_EMAIL_GATEWAY_LOCAL_HOSTNAME": "bench.local",
            },
        )
        self.replicas = Replicas("email_gateway", env, "STAGGER_EMAIL_GATEWAY_HTTP_PORT", self.var)
        await self.replicas.start_first()

    async def stop(self) -> None:
        await self.replicas.stop()
        self.server.terminate()
        self.server.join(10)
        await self.nc.close()

    async def measure(self) -> float:
        """Publish `MESSAGES` over the sites; the rate until the sink took them all."""
        prefix = uuid.uuid4().hex[:8]
        outgoing: list[Outgoing] = []
        for site in self.sites:
            payload = {
                "channel": "email",
                "messages": [
                    {
                        "to": f"patient{i}@example.org",
                        "subject": f"Your check-up is due ({i})",
                        "body": BODY,
                        "category": "reminder",
                        "idempotency_key": f"{prefix}-{i}",
                    }
                    for i in range(PER_SITE)
                ],
            }
            outgoing += validate(site, SubmissionIn.model_validate(payload), "bench")[1]
        before = self.counter.value
        started = time.perf_counter()
        ticking = asyncio.create_task(self._ticks())
        try:
            await publisher_for(self.nc).publish_all(outgoing)

            async def all_arrived() -> bool:
                return bool(self.counter.value - before >= MESSAGES)

            await _until(all_arrived, 300, "every email at the SMTP server")
            return rate(MESSAGES, started)
        finally:
            ticking.cancel()

    async def _ticks(self) -> None:
        """A send-now tick per site every 0.25 s while messages flow in."""
        publisher = publisher_for(self.nc)
        while True:
            now = datetime.now(UTC)
            out = []
            for site in self.sites:
                tick_id = uuid.uuid4().hex
                data = TickIssued(
                    tick_id=tick_id,
                    channel="email",
                    scope="site",
                    site_id=site.site_id,
                    account="bench",
                    budget=PER_SITE,
                    spacing_seconds=0.0,
                    scheduled_at=now,
                    not_before=now,
                    # Short-lived, as a cycle's: leftovers of a round do not pile up.
                    not_after=now + timedelta(seconds=2),
                    reason="bench send-now",
                    manual=True,
                )
                headers, body = encode(
                    make_event(data, source="bench", actor="bench", event_id=tick_id)
                )
                out.append(Outgoing(subjects.tick_site("email", site.site_id), body, headers))
            await publisher.publish_all(out)
            await asyncio.sleep(0.25)


async def email_scaleout(nats_url: str) -> list[Result]:
    missing = postgres_missing()
    if missing:
        print(f"   email.scaleout skipped: {missing}", flush=True)
        return []
    database_url = await create_database(ADMIN_PG, f"stagger_bench_email_scale_{os.getpid()}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench = EmailScaleout(nats_url, Path(tmp), database_url)
            await bench.start()
            try:
                two, one, two_all, one_all = await alternate_replicas(bench.replicas, bench.measure)
            finally:
                await bench.stop()
    finally:
        await drop_database(ADMIN_PG, database_url)
    return [
        Result(
            "email.scaleout",
            "messages/s",
            two,
            one,
            notes=f"{MESSAGES} emails a round over {SITES} sites, each with its own SMTP login "
            f"(its own account), a send-now tick per site every 0.25 s, outbox → email gateway "
            f"replicas on one PostgreSQL database → the project's SMTP sink answering each "
            f"message after {ANSWER_MS} ms; value: two replicas, baseline: one, median of "
            f"{ROUNDS} alternating rounds",
            extra={
                "rounds_two_replicas": [round(v, 1) for v in two_all],
                "rounds_one_replica": [round(v, 1) for v in one_all],
            },
        )
    ]


async def run(nats_url: str) -> list[Result]:
    """Two gateway replicas against one, SMS and email (one failing keeps the other's entry)."""
    results: list[Result] = []
    for name, bench in (("sms_scaleout", sms_scaleout), ("email_scaleout", email_scaleout)):
        print(f"   {name} …", flush=True)
        try:
            results += await bench(nats_url)
        except Exception as exc:
            print(f"!! {name} failed: {exc!r}", flush=True)
    return results
