"""The set-up both scale-out benchmarks share (`bench/scaleout.py` has the channels).

NATS streams, a group of `SITES` sites made through the config handlers, gateway replicas on
one PostgreSQL database (one always running, a second started and stopped between rounds),
and the measured rounds. A channel adds its provider, its site settings, its submissions and
its ticks (`Scaleout`'s hooks).

The rate of a round is its `MESSAGES` over the time from the first send recorded to the last
(in the shared ledger, by whichever replica): the bench's own publishing, intake's first batch
and the wait for the first tick are start-up, not the replicas' sending. Each round's rate
from the start of publishing is kept beside it (`end_to_end_*`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import sqlalchemy as sa
from nats.aio.client import Client

from bench.harness import Result
from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, validate
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import SETTINGS, ensure_streams
from shared.db.engine import create_engine
from shared.eventstore import EventStore
from shared.runtime.nats_server import free_port, port_open
from shared.secrets import SecretBox, generate_key
from tests.support.postgres import create_database, drop_database
from tests.support.processes import PORT_VARS, ServiceProcess, service_env

ADMIN_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SITES = 16
PER_SITE = 50
MESSAGES = SITES * PER_SITE
ROUNDS = 3
PATIENCE = 180.0
"""Seconds a replica may take to be ready (five times that for a round): the machines these
run on are shared, and a loaded one once took over 60 s to start a gateway."""


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


@dataclass(frozen=True)
class Round:
    """One measured round: the sending rate (first send to last) and the end-to-end rate."""

    rate: float
    end_to_end: float


class Replicas:
    """One gateway replica always running, a second one started and stopped between rounds."""

    def __init__(self, service: str, env: dict[str, str], var: Path) -> None:
        self.service = service
        self.env = env
        self.var = var
        self.first: ServiceProcess | None = None
        self.second: ServiceProcess | None = None

    async def start_first(self) -> None:
        self.first = await asyncio.to_thread(self._start, "one")

    async def start_second(self) -> None:
        self.second = await asyncio.to_thread(self._start, "two")

    async def stop_second(self) -> None:
        if self.second is not None:
            await asyncio.to_thread(self.second.stop)
            self.second = None

    async def stop(self) -> None:
        await self.stop_second()
        if self.first is not None:
            await asyncio.to_thread(self.first.stop)

    def _start(self, name: str) -> ServiceProcess:
        env = self._env(name)
        service = ServiceProcess(self.service, env, int(env[PORT_VARS[self.service]])).start()
        return service.wait_ready(timeout=PATIENCE)

    def _env(self, name: str) -> dict[str, str]:
        # Same database and NATS, own var directory and HTTP port.
        env = {**self.env, "STAGGER_VAR_DIR": str(self.var / name)}
        env[PORT_VARS[self.service]] = str(free_port())
        return env


async def alternate_replicas(
    replicas: Replicas, measure: Callable[[], Awaitable[Round]], rounds: int = ROUNDS
) -> tuple[list[Round], list[Round]]:
    """Every round with two replicas and with one, alternating (after one warm-up round)."""
    one: list[Round] = []
    two: list[Round] = []
    await measure()  # warm: connections, caches, the database's first pages
    for _ in range(rounds):
        one.append(await measure())
        await replicas.start_second()
        try:
            two.append(await measure())
        finally:
            await replicas.stop_second()
    return two, one


SERVICE_KEY = generate_key()
"""One service key for every benchmark of the run, as in a deployment: the first gateway to start
seals the group's tag key in the shared NATS key-value bucket, and the next must open it."""


class Scaleout:
    """The set-up both benchmarks share; a channel fills in the hooks below."""

    name = ""
    service = ""
    group = ""
    messages: sa.Table

    def __init__(self, nats_url: str, var: Path, database_url: str) -> None:
        self.nats_url = nats_url
        self.var = var
        self.database_url = database_url
        self.key = SERVICE_KEY
        self.sites: list[Any] = []
        self.round = 0

    # --- channel hooks -----------------------------------------------------------------

    async def start_provider(self) -> None:
        """Start the provider the replicas send to."""

    async def stop_provider(self) -> None:
        """Stop it again."""

    async def site_settings(self, i: int) -> dict[str, Any]:
        """Settings of site `i` (its own provider account)."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The gateway's own variables."""
        return {}

    def message(self, i: int) -> dict[str, Any]:
        """Message `i` of a site's submission (without its idempotency key)."""
        raise NotImplementedError

    async def ticks(self) -> None:
        """Publish ticks for every site or account until cancelled."""
        raise NotImplementedError

    def notes(self) -> str:
        """What a round sends through what."""
        raise NotImplementedError

    # --- the shared set-up and rounds ------------------------------------------------------

    async def start(self) -> None:
        """NATS streams, the provider, the group and its sites, then the first replica."""
        self.nc: Client = await nats.connect(self.nats_url)
        await ensure_streams(self.nc.jetstream())
        await self.start_provider()
        handlers = ConfigHandlers(
            self.nc,
            SettingsStore(EventStore(self.nc, SETTINGS)),
            SecretBox([self.key.encode()]),
            None,
            simulator_enabled=True,
        )
        await handlers.create_group(self.group, f"Bench {self.group}", {}, actor="bench")
        for i in range(SITES):
            name = f"{self.group}-{i}"
            site = await handlers.create_site(
                self.group,
                name,
                {"name": name, "timezone": "UTC"},
                await self.site_settings(i),
                actor="bench",
            )
            self.sites.append(site)
        extra = {"STAGGER_SECRET_KEY": self.key, "STAGGER_LOG_LEVEL": "WARNING", **self.env()}
        env = service_env(self.nats_url, self.var, self.database_url, extra=extra)
        self.replicas = Replicas(self.service, env, self.var)
        self.db = create_engine(self.database_url)
        await self.replicas.start_first()

    async def stop(self) -> None:
        """Stop the replicas, the provider and the connections."""
        await self.replicas.stop()
        await self.db.dispose()
        await self.stop_provider()
        await self.nc.close()

    async def measure(self) -> Round:
        """Publish `MESSAGES` over the sites; the rates once every one is recorded sent."""
        self.round += 1
        outgoing: list[Outgoing] = []
        for site in self.sites:
            messages = [
                {**self.message(i), "idempotency_key": f"{self.round}-{site.site_id}-{i}"}
                for i in range(PER_SITE)
            ]
            body = SubmissionIn.model_validate({"channel": self.channel, "messages": messages})
            outgoing += validate(site, body, "bench")[1]
        before = await self._sent()
        begun = datetime.now(UTC)
        started = time.perf_counter()
        ticking = asyncio.create_task(self.ticks())
        try:
            await publisher_for(self.nc).publish_all(outgoing)

            async def all_sent() -> bool:
                return await self._sent() - before >= MESSAGES

            await _until(all_sent, PATIENCE * 5, f"every {self.channel} message sent")
            end_to_end = MESSAGES / (time.perf_counter() - started)
        finally:
            ticking.cancel()
        return Round(await self._sending_rate(begun), end_to_end)

    @property
    def channel(self) -> str:
        return self.service.removesuffix("_gateway")

    async def _sent(self) -> int:
        # Asked of the shared ledger, not of the provider: polling the simulator's admin API
        # would take its time from the sends.
        m = self.messages
        async with self.db.connect() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count()).select_from(m).where(m.c.state == "sent")
            )
        return int(count or 0)

    async def _sending_rate(self, begun: datetime) -> float:
        """This round's messages over the time from its first send recorded to its last."""
        m = self.messages
        async with self.db.connect() as conn:
            count, first, last = (
                await conn.execute(
                    sa.select(sa.func.count(), sa.func.min(m.c.sent_at), sa.func.max(m.c.sent_at))
                    .select_from(m)
                    .where(m.c.state == "sent", m.c.sent_at >= begun)
                )
            ).one()
        assert count == MESSAGES, f"{count} of {MESSAGES} sent this round"
        span: float = max((last - first).total_seconds(), 1e-3)
        return (int(count) - 1) / span  # n sends span n - 1 gaps

    def result(self, two: list[Round], one: list[Round]) -> Result:
        """The benchmark's entry: medians of the sending rates, every figure in details."""
        return Result(
            self.name,
            "messages/s",
            statistics.median(r.rate for r in two),
            statistics.median(r.rate for r in one),
            notes=f"{self.notes()}; rate from a round's first send to its last (start-up "
            f"excluded; end_to_end_* count from the start of publishing); value: two "
            f"replicas, baseline: one, median of {ROUNDS} alternating rounds",
            extra={
                "rounds_two_replicas": [round(r.rate, 1) for r in two],
                "rounds_one_replica": [round(r.rate, 1) for r in one],
                "end_to_end_two_replicas": [round(r.end_to_end, 1) for r in two],
                "end_to_end_one_replica": [round(r.end_to_end, 1) for r in one],
            },
        )


async def scaleout(kind: type[Scaleout], nats_url: str) -> list[Result]:
    """One benchmark: its own database and directory, the rounds, its entry."""
    missing = postgres_missing()
    if missing:
        print(f"   {kind.name} skipped: {missing}", flush=True)
        return []
    slug = kind.name.replace(".", "_")
    database_url = await create_database(ADMIN_PG, f"stagger_bench_{slug}_{os.getpid()}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench = kind(nats_url, Path(tmp), database_url)
            await bench.start()
            try:
                two, one = await alternate_replicas(bench.replicas, bench.measure)
            finally:
                await bench.stop()
    finally:
        await drop_database(ADMIN_PG, database_url)
    return [bench.result(two, one)]
