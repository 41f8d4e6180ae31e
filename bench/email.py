"""Email gateway benchmark.

- email.dispatch: messages/s from the outbox through a real email gateway process (intake into
  its SQL queue and ledger, cycle ticks every 0.25 s as a site checking often with no delay
  gets them — sending overlaps intake, as in steady operation — claims under leases, composing
  each message,
  SMTP on reused connections, `sent` recorded with its event) to an aiosmtpd server (the
  project's SMTP sink, in its own process, keeping nothing), throttling off; beside, in the same
  run and alternating with it, plain aiosmtplib sending the very same message bytes over the
  same number of reused connections to the same server.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import nats

from bench.harness import Result, alternate, rate
from bench.scheduler import cpu_seconds
from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, validate
from services.email_gateway.adapters.composer import compose
from services.email_gateway.config import EmailGatewayConfig as GatewaySettings
from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import SETTINGS, ensure_streams
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.messages import MessageAccepted
from shared.events.schemas.ticks import TickIssued
from shared.eventstore import EventStore
from shared.runtime.nats_server import free_port, port_open
from shared.secrets import SecretBox, generate_key
from tests.support.processes import service_env, start_service

MESSAGES = 2000
# The gateway's configured number of connections per account (its default unless
# STAGGER_EMAIL_GATEWAY_SMTP_CONNECTIONS_PER_ACCOUNT says otherwise); the baseline uses as many.
CONNECTIONS = GatewaySettings().smtp_connections_per_account
BODY = (
    "Dear patient, our records show that your six-monthly check-up and hygiene visit are now "
    "due. Please call the practice or reply to this email to book a time that suits you. "
) * 4


def _serve(port: int, counter: Any, ready: Any) -> None:
    """The SMTP server process: the project's sink, keeping nothing, counting messages."""
    from services.smtp_sink.composition import build_server
    from services.smtp_sink.config import SinkConfig

    async def main() -> None:
        server = build_server(SinkConfig(port=port, store=False), None)

        def count(_: Any) -> None:
            with counter.get_lock():
                counter.value += 1
            server.handler.received.clear()  # keep memory flat

        server.handler.listeners.append(count)
        await server.start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def _wait(condition: Any, timeout: float, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish")
        await asyncio.sleep(interval)


async def email_dispatch(nats_url: str) -> list[Result]:
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream())
    key = generate_key()
    port = free_port()
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    ready = context.Event()
    server = context.Process(target=_serve, args=(port, counter, ready), daemon=True)
    server.start()
    await asyncio.to_thread(ready.wait, 30)
    assert port_open(port)

    handlers = ConfigHandlers(
        nc, SettingsStore(EventStore(nc, SETTINGS)), SecretBox([key.encode()]), None
    )
    await handlers.create_group("bench", "Bench", {}, actor="bench")
    email = {
        "enabled": True,
        "address": "front@smile.example",
        "display_name": "Smile Dental",
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
        "mode": "manual",
        "per_minute": 0,
        "provider_preset": "custom",
    }
    site = await handlers.create_site(
        "bench", "bench-site", {"name": "Bench"}, {"email": email}, actor="bench"
    )

    def batch() -> tuple[list[Outgoing], list[MessageAccepted]]:
        prefix = uuid.uuid4().hex[:8]
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
                for i in range(MESSAGES)
            ],
        }
        _, outgoing = validate(site, SubmissionIn.model_validate(payload), "bench")
        accepted = [MessageAccepted.model_validate_json(o.payload) for o in outgoing]
        return outgoing, accepted

    async def queued() -> int:
        reply = await nc.request(
            subjects.rpc("email_gateway", "queue_depth"),
            json.dumps({"site_id": "bench-site"}).encode(),
            timeout=5,
        )
        return int(json.loads(reply.data)["queued"])

    async def tick() -> None:
        now = datetime.now(UTC)
        tick_id = uuid.uuid4().hex
        data = TickIssued(
            tick_id=tick_id,
            channel="email",
            scope="site",
            site_id="bench-site",
            account="bench",
            budget=MESSAGES,
            spacing_seconds=0.0,
            scheduled_at=now,
            not_before=now,
            not_after=now.replace(year=now.year + 1),
            reason="bench send-now",
            manual=True,
        )
        headers, body = encode(make_event(data, source="bench", actor="bench", event_id=tick_id))
        await publisher_for(nc).publish_all(
            [Outgoing(subjects.tick_site("email", "bench-site"), body, headers)]
        )

    with tempfile.TemporaryDirectory() as var:
        env = service_env(
            nats_url,
            Path(var),
            extra={
                "STAGGER_SECRET_KEY": key,
                "STAGGER_LOG_LEVEL": "WARNING",
                "STAGGER_EMAIL_GATEWAY_SMTP_CONNECTIONS_PER_ACCOUNT": str(CONNECTIONS),
                "STAGGER_EMAIL_GATEWAY_LOCAL_HOSTNAME": "bench.local",
            },
        )
        gateway = await asyncio.to_thread(start_service, "email_gateway", env)
        clients: list[aiosmtplib.SMTP] = []
        try:
            gateway_pid = gateway.process.pid if gateway.process is not None else 0
            cpu: dict[str, list[float]] = {
                "gateway": [],
                "sink_gateway": [],
                "client_raw": [],
                "sink_raw": [],
            }

            def per_message(seconds: float) -> float:
                return round(seconds * 1000 / MESSAGES, 3)

            async def project() -> float:
                outgoing, _ = batch()
                before = counter.value
                cpu_gateway, cpu_sink = cpu_seconds(gateway_pid), cpu_seconds(server.pid or 0)
                started = time.perf_counter()

                async def cycles() -> None:
                    # Ticks keep coming while messages flow in (a send/receive cycle every
                    # 0.25 s); each releases what is queued by then.
                    while True:
                        await tick()
                        await asyncio.sleep(0.25)

                ticking = asyncio.create_task(cycles())
                try:
                    await publisher_for(nc).publish_all(outgoing)

                    async def all_arrived() -> bool:
                        return counter.value - before >= MESSAGES

                    await _wait(all_arrived, 300)
                    took = rate(MESSAGES, started)
                finally:
                    ticking.cancel()
                # CPU per message of each process (steadier than rates on a shared machine).
                cpu["sink_gateway"].append(per_message(cpu_seconds(server.pid or 0) - cpu_sink))

                async def drained() -> bool:
                    return await queued() == 0

                await _wait(drained, 60, 0.05)
                cpu["gateway"].append(per_message(cpu_seconds(gateway_pid) - cpu_gateway))
                return took

            for _ in range(CONNECTIONS):
                client = aiosmtplib.SMTP(
                    hostname="127.0.0.1", port=port, start_tls=False, local_hostname="bench.local"
                )
                await client.connect()
                clients.append(client)

            async def baseline() -> float:
                _, accepted = batch()
                # The very bytes the gateway would send, composed before the clock starts.
                composed = [
                    compose(
                        m,
                        from_address="front@smile.example",
                        display_name="Smile Dental",
                        unsubscribe_url=None,
                    )
                    for m in accepted
                ]
                share = [composed[i::CONNECTIONS] for i in range(CONNECTIONS)]
                for client in clients:
                    if not client.is_connected:  # the server closes idle sessions after 60 s
                        await client.connect()
                before = counter.value
                cpu_client, cpu_sink = time.process_time(), cpu_seconds(server.pid or 0)
                started = time.perf_counter()

                async def send(client: aiosmtplib.SMTP, messages: list[Any]) -> None:
                    for message in messages:
                        await client.sendmail(
                            message.envelope_from, [message.recipient], message.data
                        )

                await asyncio.gather(*(send(c, s) for c, s in zip(clients, share, strict=True)))

                async def all_arrived() -> bool:
                    return counter.value - before >= MESSAGES

                await _wait(all_arrived, 60)
                took = rate(MESSAGES, started)
                cpu["client_raw"].append(per_message(time.process_time() - cpu_client))
                cpu["sink_raw"].append(per_message(cpu_seconds(server.pid or 0) - cpu_sink))
                return took

            await project()  # warm: connections open, caches filled
            await baseline()
            for samples in cpu.values():
                samples.clear()
            ours, raw, ours_all, raw_all = await alternate(project, baseline, rounds=5)
        finally:
            for client in clients:
                try:
                    await client.quit()
                except Exception:
                    client.close()
            await asyncio.to_thread(gateway.stop)
            server.terminate()
            server.join(10)
            await nc.close()
    return [
        Result(
            "email.dispatch",
            "messages/s",
            ours,
            raw,
            notes=f"{MESSAGES} emails published to the outbox, taken into a gateway process's "
            f"SQLite queue, released by one send-now tick, composed and sent over "
            f"{CONNECTIONS} reused SMTP connections to an aiosmtpd server process, each recorded "
            f"sent with its event; throttling off. Baseline: aiosmtplib sendmail of the same "
            f"bytes over {CONNECTIONS} reused connections to the same server (median of 5, "
            "alternating)",
            extra={
                "rounds_gateway": [round(x, 1) for x in ours_all],
                "rounds_aiosmtplib": [round(x, 1) for x in raw_all],
                # CPU ms per message of each process in each round (gateway and sink during
                # the gateway's rounds; this benchmark's own client and sink during the raw).
                "cpu_ms_per_message": cpu,
            },
        )
    ]


async def run(nats_url: str) -> list[Result]:
    """Outbox → gateway → aiosmtpd, beside plain aiosmtplib."""
    print("   email_dispatch …", flush=True)
    return await email_dispatch(nats_url)
