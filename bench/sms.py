"""SMS gateway benchmark.

- sms.dispatch: immediate-mode dispatch rate, messages/s, from the SMS outbox through a real
  SMS gateway process (intake into its SQLite queue and ledger, account ticks, claims under
  leases, the account's hard limit, opt-out and quiet-hours checks, one POST per message with
  our id as the reference — made by the replica's send process, its default — the ledger
  written after it, events through the outbox) to the SMS provider simulator over HTTP — until
  the simulator has debited every message.
  Baseline, in the same run and alternating with it: a raw loop — a plain nats-py durable pull
  consumer fetching the very same encoded messages from a stream, and the same HTTP client
  (same connection limits, same number of sends in flight) POSTing each to the same simulator.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import APIError

from bench.harness import Result, alternate, rate
from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, validate
from services.scheduler.adapters.issuing import account_tick
from services.scheduler.domain.planning import AccountTerms, Slot, account_slot
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import SETTINGS, ensure_streams
from shared.domain.accounts import sms_account_id
from shared.domain.site_settings import SmsProvider
from shared.events.codec import EXPECTED_STREAM
from shared.eventstore import EventStore
from shared.secrets import SecretBox, generate_key
from tests.integration.sms_provider_sim.harness import SimProcess
from tests.support.processes import service_env, start_service

MESSAGES = 2000
IN_FLIGHT = 16
RATE = 1000.0  # the account's limit: the highest a site may set, so that it never binds here
BODY = "Dear patient, your check-up is due. Reply YES to book or call us on 0123 456 789."
RAW_STREAM = "BENCH_RAW_SMS"


class Bench:
    """A simulator, one gateway process, and what both paths share."""

    def __init__(self, nats_url: str, var: Path) -> None:
        self.nats_url = nats_url
        self.var = var
        self.key = generate_key()
        self.sim = SimProcess(var / "sim.log", STAGGER_LOG_LEVEL="WARNING")
        self.http = httpx.AsyncClient(
            trust_env=False,
            timeout=30,
            # Idle connections dropped before the simulator's own 5 s keep-alive closes them:
            # a request on a connection closed under it failed the raw loop (ReadError).
            limits=httpx.Limits(
                max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0
            ),
        )
        self.round = 0

    async def start(self) -> None:
        self.nc = await nats.connect(self.nats_url)
        self.js = self.nc.jetstream()
        await ensure_streams(self.js)
        await self.js.add_stream(
            StreamConfig(
                name=RAW_STREAM, subjects=["bench.raw.>"], retention=RetentionPolicy.WORK_QUEUE
            )
        )
        await self.sim.start()
        box = SecretBox([self.key.encode()])
        self.handlers = ConfigHandlers(
            self.nc, SettingsStore(EventStore(self.nc, SETTINGS)), box, None, simulator_enabled=True
        )
        await self.handlers.create_group("bench", "Bench", {}, actor="bench")
        env = service_env(
            self.nats_url,
            self.var / "gateway",
            extra={
                "STAGGER_SECRET_KEY": self.key,
                "STAGGER_LOG_LEVEL": "WARNING",
                "STAGGER_SMS_GATEWAY_PARALLEL_SENDS": str(IN_FLIGHT),
            },
        )
        # Generous: on a shared, busy machine the gateway's start alone took over a minute.
        gateway = start_service("sms_gateway", env, wait=False)
        self.gateway = await asyncio.to_thread(gateway.wait_ready, 300)

    async def stop(self) -> None:
        await asyncio.to_thread(self.gateway.stop)
        self.sim.terminate()
        await self.http.aclose()
        await self.nc.close()

    async def account(self) -> tuple[str, str, float]:
        """A fresh simulator account (no webhooks: dispatch only); returns name, key, credits."""
        name, key, credits = f"bench-{secrets.token_hex(4)}", secrets.token_hex(12), 10 * MESSAGES
        response = await self.http.put(
            f"{self.sim.url}/v1/admin/accounts/{name}",
            json={"api_key": key, "credits": credits, "rate_per_second": 100_000},
        )
        assert response.status_code == 201, response.text
        return name, key, credits

    async def debited(self, name: str, credits: float) -> None:
        """Until the simulator has charged every message of the round."""
        while True:
            view = (await self.http.get(f"{self.sim.url}/v1/admin/accounts/{name}")).json()
            if view["credits"] <= credits - MESSAGES:
                return
            await asyncio.sleep(0.02)

    def batch(self, site: Any) -> list[Outgoing]:
        self.round += 1
        body = SubmissionIn.model_validate(
            {
                "channel": "sms",
                "messages": [
                    {"to": f"+614{i:08d}", "body": BODY, "idempotency_key": f"{self.round}-{i}"}
                    for i in range(MESSAGES)
                ],
            }
        )
        _, outgoing = validate(site, body, "bench")
        return outgoing

    async def project(self) -> float:
        """Outbox → gateway → simulator, immediate mode, ticks as the scheduler sends them."""
        name, key, credits = await self.account()
        site_id = f"bench-{secrets.token_hex(3)}"
        provider = {
            "kind": "simulator",
            "account_id": name,
            "secret": key,
            "base_url": self.sim.url,
            "rate_per_second": RATE,
        }
        site = await self.handlers.create_site(
            "bench",
            site_id,
            {"name": site_id, "timezone": "UTC"},
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
        account = sms_account_id(SmsProvider.model_validate({**provider, "secret": None}), "bench")
        assert account is not None
        outgoing = self.batch(site)
        await self._gateway_knows(site_id)
        started = time.perf_counter()
        ticks = asyncio.create_task(self._ticks(account, site_id))
        try:
            _stored(await publisher_for(self.nc).publish_all(outgoing))
            await self.debited(name, credits)
        finally:
            ticks.cancel()
        return rate(MESSAGES, started)

    async def _gateway_knows(self, site_id: str) -> None:
        for _ in range(200):
            reply = await self.nc.request(
                "stagger.rpc.sms_gateway.provider_test",
                json.dumps({"site_id": site_id, "group_id": "bench", "actor": "bench"}).encode(),
                timeout=15,
            )
            if json.loads(reply.data)["ok"]:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the gateway never saw the bench site")

    async def _ticks(self, account: str, site_id: str) -> None:
        period = timedelta(seconds=1)
        terms = AccountTerms((site_id,), "bench", int(RATE), 1 / RATE, "bench: immediate SMS")
        publisher = publisher_for(self.nc)
        at = datetime.now(UTC)
        # The first tick now (the scheduler's grid would wait up to a second for it).
        await publisher.publish_all([account_tick(account, terms, Slot(at, at + period))])
        while True:
            slot = account_slot(period, datetime.now(UTC) + timedelta(microseconds=1))
            await asyncio.sleep(max(0.0, (slot.instant - datetime.now(UTC)).total_seconds()))
            await publisher.publish_all([account_tick(account, terms, slot)])

    async def baseline(self) -> float:
        """Plain nats-py pull + the same HTTP client POSTing to the same simulator."""
        name, key, credits = await self.account()
        site = await self.handlers.site(await self._any_site())
        # The very same encoded messages, minus the header pinning them to the OUTBOX stream.
        outgoing = [
            Outgoing(
                f"bench.raw.{i}",
                m.payload,
                {k: v for k, v in (m.headers or {}).items() if k != EXPECTED_STREAM},
            )
            for i, m in enumerate(self.batch(site))
        ]
        durable = f"raw-{secrets.token_hex(3)}"
        sub = await self.js.pull_subscribe(
            "bench.raw.>",
            durable=durable,
            stream=RAW_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20_000),
        )
        headers = {"Authorization": f"Bearer {key}"}
        slots = asyncio.Semaphore(IN_FLIGHT)
        url = f"{self.sim.url}/v1/messages"

        async def send(msg: Any) -> None:
            async with slots:
                data = json.loads(msg.data)
                body = {
                    "reference": data["message_id"],
                    "to": data["to"],
                    "from": "Bench",
                    "body": data["body"],
                }
                try:
                    response = await self.http.post(url, json=body, headers=headers)
                except httpx.TransportError:
                    # A busy machine's simulator may drop a connection; once more (a
                    # duplicate debit only ends the round's wait sooner, never later).
                    response = await self.http.post(url, json=body, headers=headers)
                assert response.status_code in (200, 201), response.text
            await msg.ack()

        started = time.perf_counter()
        _stored(await publisher_for(self.nc).publish_all(outgoing))
        done = 0
        while done < MESSAGES:
            try:
                batch = await sub.fetch(200, timeout=1)
            except TimeoutError:
                continue
            await asyncio.gather(*(send(m) for m in batch))
            done += len(batch)
        await self.debited(name, credits)
        result = rate(MESSAGES, started)
        await sub.unsubscribe()
        await self.js.delete_consumer(RAW_STREAM, durable)
        return result

    async def _any_site(self) -> str:
        if not hasattr(self, "_warm_site"):
            self._warm_site = f"bench-{secrets.token_hex(3)}"
            await self.handlers.create_site(
                "bench",
                self._warm_site,
                {"name": "raw"},
                {"sms": {"provider": {"kind": "simulator", "account_id": "x", "secret": "x"}}},
                actor="bench",
            )
        return self._warm_site


def _stored(acks: list[Any]) -> None:
    refused = [a for a in acks if isinstance(a, APIError)]
    if refused:
        raise RuntimeError(f"{len(refused)} messages refused: {refused[0]}")


async def sms_dispatch(nats_url: str) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(nats_url, Path(tmp))
        await bench.start()
        try:
            await bench.baseline()  # warm both paths (connections, caches, SQLite file)
            await bench.project()
            ours, raw, ours_all, raw_all = await alternate(bench.project, bench.baseline, rounds=5)
        finally:
            await bench.stop()
    return [
        Result(
            "sms.dispatch",
            "messages/s",
            ours,
            raw,
            notes=f"{MESSAGES} SMS per round, immediate mode (account ticks every 1 s, budget "
            f"{int(RATE)}), outbox → sms_gateway process (SQLite queue/ledger, leases, hard "
            f"limit, checks, POSTs made by its send process, ledger after each send, events) → "
            f"simulator over HTTP, "
            f"{IN_FLIGHT} sends in flight; baseline: nats-py pull + the same httpx client, same "
            f"concurrency, same simulator. Median of 5 alternating rounds.",
            extra={
                "rounds_sms_gateway": [round(v, 1) for v in ours_all],
                "rounds_raw_loop": [round(v, 1) for v in raw_all],
            },
        )
    ]


async def run(nats_url: str) -> list[Result]:
    """The SMS gateway's dispatch rate beside a raw loop."""
    print("   sms_dispatch …", flush=True)
    return await sms_dispatch(nats_url)
