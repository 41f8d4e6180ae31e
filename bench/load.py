"""Load benchmark (`just load`): many sites, a large queue, immediate-mode SMS, end to end.

`python -m bench.load [--db sqlite|postgres|both] [--sites 1000] [--messages 200000]`

Per database, in one run:

1. nats-server from the wheel (a free port, never 4222), the SMS provider simulator, and the
   config service, the scheduler and the SMS gateway as separate processes on that database
   (SQLite: one file per service, the embedded default; PostgreSQL: a fresh database
   `stagger_load_<pid>` shared by every service, dropped afterwards).
2. `--groups` groups, each with its own simulator account (sites of a group share it, so its
   sites share one account tick a second). The sites' account rate is 1,000/s (the highest a
   site may set) and the simulator's own bucket is far above it: Stagger is what is measured.
   Receipts go back to the gateway's webhook, as in production.
3. **Raw dispatch baseline**: a plain httpx loop POSTing a sample of messages straight to the
   simulator's send endpoint, as many in flight as the gateway's `PARALLEL_SENDS`.
4. **Load**: every site receives its share of `--messages` through `POST
   /api/v1/sites/{site}/messages` (batches of at most `--batch`, `--submitters` requests in
   flight), each request timed. Right after each request, the same worker publishes the same
   number of encoded messages with plain nats-py `publish_async` to a scratch stream and times
   that too: the **raw submission baseline**, measured under the very same load.
5. Every second: the simulator's received count (credits debited) and the gateway's RSS
   (VmRSS from /proc). The sustained rate is taken between 10 % and 90 % of the messages.
6. **Checks**: the simulator stored exactly the accepted message ids, each once; its log holds
   no re-POSTed duplicate; the gateway's ledger holds every message as `sent`. A failed check
   exits non-zero and writes nothing for that database. With `--time-limit` a run may be cut:
   then what the simulator lacks must still wait in the ledger (nothing lost, nothing sent
   twice so far), and the entries are saved marked as a cut run.

Entries: `load.<db>.dispatch_rate` (messages/s vs the raw HTTP loop), `load.<db>.submit_p99_ms`
(vs the raw publish), `load.<db>.gateway_rss_mb` (peak vs the idle gateway before the load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import sqlalchemy as sa
from nats.js.api import StreamConfig
from sqlalchemy.ext.asyncio import create_async_engine

from bench.harness import Result, print_table, save
from bench.load_procs import Child, Children, rss_mb
from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, validate
from shared.bus.topology import SETTINGS, ensure_streams
from shared.events.codec import EXPECTED_STREAM
from shared.eventstore import EventStore
from shared.runtime.nats_server import NatsServer, free_port
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.support.postgres import create_database, drop_database
from tests.support.processes import service_env

ADMIN_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
BODY = "Dear patient, your check-up is due. Reply YES to book or call us on 0123 456 789."
WEBHOOK_SECRET = "load-webhook-secret"
SITE_RATE = 1000.0  # the highest `sms.provider.rate_per_second` a site may set
SIM_BUCKET = 100_000  # the simulator's own limit: never the one that binds
PARALLEL_SENDS = 16  # the gateway's default STAGGER_SMS_GATEWAY_PARALLEL_SENDS
RAW_STREAM = "LOAD_RAW"
STALL_SECONDS = 180.0  # no progress at the simulator for this long: the run has failed


@dataclass
class Options:
    """What to run."""

    sites: int
    messages: int
    groups: int
    batch: int
    submitters: int
    baseline_sample: int
    receipts: bool
    keep_logs: Path | None
    time_limit_s: float | None = None
    save: bool = True


@dataclass
class Sample:
    """One second of the run."""

    t: float
    received: int
    rss_mb: float | None


@dataclass
class Run:
    """Everything measured for one database."""

    db: str
    setup_s: float = 0.0
    submit_s: float = 0.0
    dispatch_s: float = 0.0
    total_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    raw_latencies_ms: list[float] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    rss_idle_mb: float = 0.0
    raw_dispatch_rate: float = 0.0
    accepted_ids: set[str] = field(default_factory=set)
    checks: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def noon_zone() -> str:
    """An `Etc/GMT±N` zone where it is about noon now.

    Recipients are Australian mobiles, whose zone is the site's (the number does not tell), so
    the quiet-hours guard (00:00-23:59) sits half a day away from the run whatever the hour.
    """
    offset = (12 - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    # Etc/GMT signs are inverted: Etc/GMT-10 is UTC+10.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


# --- infrastructure --------------------------------------------------------------------------


class Stack:
    """NATS, the simulator and three Stagger services on one database, all child processes."""

    def __init__(self, db: str, var: Path, options: Options) -> None:
        self.db = db
        self.var = var
        self.options = options
        self.children = Children(var)
        self.key = generate_key()
        self.database_url: str | None = None
        self.nats: NatsServer | None = None

    async def start(self) -> None:
        if self.db == "postgres":
            self.database_url = await create_database(ADMIN_PG, f"stagger_load_{os.getpid()}")
        self.nats = NatsServer(port=free_port(), store_dir=self.var / "nats")
        self.nats.start()
        sim_port = free_port()
        sim_env = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_")}
        sim_env.update(
            {
                "STAGGER_SIM_PORT": str(sim_port),
                "STAGGER_SIM_HOST": "127.0.0.1",
                "STAGGER_LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.sim = self.children.python_module(
            "sms_sim", "services.sms_provider_sim", sim_env, f"http://127.0.0.1:{sim_port}"
        )
        started: list[Child] = []
        for name in ("config", "scheduler", "sms_gateway"):
            env = service_env(
                self.nats.url,
                self.var / "services",
                self.database_url,
                extra={
                    "STAGGER_SECRET_KEY": self.key,
                    "STAGGER_LOG_LEVEL": "WARNING",
                },
            )
            port = {
                "config": "STAGGER_HTTP_PORT",
                "scheduler": "STAGGER_SCHEDULER_HTTP_PORT",
                "sms_gateway": "STAGGER_SMS_GATEWAY_HTTP_PORT",
            }[name]
            url = f"http://127.0.0.1:{env[port]}"
            started.append(self.children.python_module(name, f"services.{name}", env, url))
        self.config, self.scheduler, self.gateway = started
        await self.sim.wait_ready("/healthz")
        for child in started:
            await child.wait_ready()

    async def stop(self) -> None:
        self.children.stop_all()
        if self.nats is not None:
            self.nats.stop()
        if self.db == "postgres" and self.database_url is not None:
            await drop_database(ADMIN_PG, self.database_url)

    def alive(self) -> list[str]:
        """Names of children that have exited (they should all still run)."""
        return [
            f"{c.name} exited with {c.process.returncode}"
            for c in (self.sim, self.config, self.scheduler, self.gateway)
            if c.process.poll() is not None
        ]

    async def ledger_states(self) -> dict[str, int]:
        """The gateway's ledger: how many messages in each state."""
        url = self.database_url or f"sqlite+aiosqlite:///{self.var / 'services' / 'sms_gateway.db'}"
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.text("SELECT state, count(*) FROM sms_messages GROUP BY state")
                )
                return {str(state): int(count) for state, count in rows}
        finally:
            await engine.dispose()


# --- the run ---------------------------------------------------------------------------------


class LoadRun:
    """One database's run: set up, baseline, load, checks."""

    def __init__(self, stack: Stack, options: Options) -> None:
        self.stack = stack
        self.options = options
        self.run = Run(stack.db)
        self.http = httpx.AsyncClient(
            trust_env=False,
            timeout=120,
            # Idle connections are dropped before uvicorn's 5 s keep-alive ends on the server
            # side: at the same 5 s, a request could go out on a connection being closed
            # (seen as a ReadError in the raw loop after the long site set-up).
            limits=httpx.Limits(
                max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0
            ),
        )
        self.accounts: dict[str, dict[str, Any]] = {}  # group → simulator account
        self.tokens: dict[str, str] = {}
        self.sites: list[tuple[str, str]] = []  # (group, site)
        self.credits = 10 * options.messages + 1000

    async def close(self) -> None:
        await self.http.aclose()
        with contextlib.suppress(Exception):
            await self.nc.close()

    # setup

    async def setup(self) -> None:
        stack, options = self.stack, self.options
        assert stack.nats is not None
        self.nc = await nats.connect(stack.nats.url)
        self.js = self.nc.jetstream()
        await ensure_streams(self.js)
        self.handlers = ConfigHandlers(
            self.nc,
            SettingsStore(EventStore(self.nc, SETTINGS)),
            SecretBox([stack.key.encode()]),
            None,
            simulator_enabled=True,
        )
        zone = noon_zone()
        for g in range(options.groups):
            group = f"load-{g}"
            # Groups are an operator's act (`stagger group create`): the same use case, here.
            await self.handlers.create_group(
                group,
                f"Load group {g}",
                {"profile": {"timezone": zone, "region": "AU"}},
                actor="bench:load",
            )
            _, self.tokens[group] = await issue_token(
                self.nc, group_id=group, role="group_admin", label="load"
            )
            account = {
                "name": f"load-{g}-{secrets.token_hex(3)}",
                "api_key": secrets.token_hex(12),
            }
            body: dict[str, Any] = {
                "api_key": account["api_key"],
                "credits": self.credits,
                "rate_per_second": SIM_BUCKET,
                "credits_per_segment": 1,
            }
            if options.receipts:
                body["webhook_url"] = f"{stack.gateway.url}/webhooks/sms/simulator"
                body["webhook_secret"] = WEBHOOK_SECRET
            response = await self.http.put(
                f"{stack.sim.url}/v1/admin/accounts/{account['name']}", json=body
            )
            assert response.status_code == 201, response.text
            self.accounts[group] = account
        self.sites = [(f"load-{i % options.groups}", f"site-{i:05d}") for i in range(options.sites)]
        slots = asyncio.Semaphore(8)

        async def create(group: str, site: str) -> None:
            account = self.accounts[group]
            settings = {
                "sms": {
                    "provider": {
                        "kind": "simulator",
                        "account_id": account["name"],
                        "secret": account["api_key"],
                        "base_url": stack.sim.url,
                        "rate_per_second": SITE_RATE,
                        "webhook_secret": WEBHOOK_SECRET,
                    },
                    "mode": "immediate",
                    "sender_id": "Load",
                    "quiet_hours": {"start": "00:00", "end": "23:59"},
                }
            }
            async with slots:
                response = await self.http.post(
                    f"{stack.config.url}/api/v1/groups/{group}/sites",
                    json={"site_id": site, "name": site, "settings": settings},
                    headers={"Authorization": f"Bearer {self.tokens[group]}"},
                )
            assert response.status_code == 201, response.text

        await asyncio.gather(*(create(g, s) for g, s in self.sites))
        # The gateway follows the settings stream in order: once it knows the last site of
        # each group, it knows them all (its intake would otherwise dead-letter messages for a
        # site it has not seen yet).
        last = {g: s for g, s in self.sites}
        for group, site in last.items():
            await self._gateway_knows(group, site)
        await self.js.add_stream(StreamConfig(name=RAW_STREAM, subjects=["load.raw.>"]))

    async def _gateway_knows(self, group: str, site: str) -> None:
        request = {"site_id": site, "group_id": group, "actor": "bench:load"}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(nats.errors.TimeoutError, nats.errors.NoRespondersError):
                reply = await self.nc.request(
                    "stagger.rpc.sms_gateway.provider_test", json.dumps(request).encode(), 15
                )
                if json.loads(reply.data).get("ok"):
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the gateway never saw site {site}")

    # baseline: dispatch

    async def raw_dispatch(self) -> float:
        """A plain HTTP loop straight to the simulator: the dispatch ceiling of this machine."""
        sim = self.stack.sim.url
        name, key = f"raw-{secrets.token_hex(3)}", secrets.token_hex(12)
        response = await self.http.put(
            f"{sim}/v1/admin/accounts/{name}",
            json={"api_key": key, "credits": self.credits, "rate_per_second": SIM_BUCKET},
        )
        assert response.status_code == 201, response.text
        count = self.options.baseline_sample
        headers = {"Authorization": f"Bearer {key}"}
        todo = iter(range(count))

        async def worker() -> None:
            for i in todo:
                body = {"reference": f"raw-{i}", "to": f"+614{i:08d}", "from": "Load", "body": BODY}
                sent = await self.http.post(f"{sim}/v1/messages", json=body, headers=headers)
                if sent.status_code != 201:
                    raise RuntimeError(
                        f"raw loop: simulator answered {sent.status_code} {sent.text}"
                    )

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(PARALLEL_SENDS)))
        rate = count / (time.perf_counter() - started)
        # Forget the baseline's messages and log: the load run starts from an empty simulator.
        await self.http.post(f"{sim}/v1/admin/reset")
        return rate

    # the load

    def _requests(self) -> list[tuple[str, str, int, int]]:
        """(group, site, first message index, count) for every submission request."""
        options = self.options
        share, extra = divmod(options.messages, options.sites)
        requests = []
        index = 0
        for n, (group, site) in enumerate(self.sites):
            mine = share + (1 if n < extra else 0)
            while mine > 0:
                count = min(mine, options.batch)
                requests.append((group, site, index, count))
                index += count
                mine -= count
        return requests

    async def submit_all(self) -> None:
        """Every request through the API, each followed by its raw-publish twin."""
        config = self.stack.config.url
        todo = iter(self._requests())
        states: dict[str, Any] = {}

        async def worker() -> None:
            for group, site, first, count in todo:
                messages = [
                    {"to": f"+614{i:08d}", "body": BODY} for i in range(first, first + count)
                ]
                payload = {"channel": "sms", "messages": messages}
                began = time.perf_counter()
                response = await self.http.post(
                    f"{config}/api/v1/sites/{site}/messages",
                    json=payload,
                    headers={"Authorization": f"Bearer {self.tokens[group]}"},
                )
                self.run.latencies_ms.append((time.perf_counter() - began) * 1000)
                if response.status_code != 202:
                    raise RuntimeError(
                        f"submission refused: {response.status_code} {response.text}"
                    )
                accepted = response.json()
                if accepted["accepted"] != count:
                    raise RuntimeError(f"{site}: {accepted['accepted']} of {count} accepted")
                self.run.accepted_ids.update(m["message_id"] for m in accepted["messages"])
                await self._raw_publish(site, payload, states)

        await asyncio.gather(*(worker() for _ in range(self.options.submitters)))

    async def _raw_publish(
        self, site: str, payload: dict[str, Any], states: dict[str, Any]
    ) -> None:
        """The same messages, encoded as the API encodes them, published with plain nats-py."""
        if site not in states:
            states[site] = await self.handlers.site(site)
        # Encoded before the clock starts; new message ids, so JetStream de-duplication does
        # not make the baseline's publishes free.
        _, outgoing = validate(states[site], SubmissionIn.model_validate(payload), "bench:load")
        headers = [
            {k: v for k, v in (m.headers or {}).items() if k != EXPECTED_STREAM} for m in outgoing
        ]
        began = time.perf_counter()
        futures = [
            await self.js.publish_async(f"load.raw.{site}", m.payload, headers=h)
            for m, h in zip(outgoing, headers, strict=True)
        ]
        await asyncio.gather(*futures)
        self.run.raw_latencies_ms.append((time.perf_counter() - began) * 1000)

    async def received(self) -> int:
        """Messages the simulator has charged for, over every load account (1 credit each)."""
        total = 0
        for account in self.accounts.values():
            view = await self.http.get(f"{self.stack.sim.url}/v1/admin/accounts/{account['name']}")
            total += self.credits - int(view.json()["credits"])
        return total

    async def sample(self, t0: float, stop: asyncio.Event) -> None:
        """Once a second: received count and gateway RSS."""
        pid = self.stack.gateway.pid
        while not stop.is_set():
            began = time.perf_counter()
            received = await self.received()
            self.run.samples.append(Sample(began - t0, received, rss_mb(pid)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (time.perf_counter() - began)))

    async def load(self) -> None:
        """Submit everything, then wait until the simulator has every message (or stalls)."""
        options = self.options
        self.run.rss_idle_mb = rss_mb(self.stack.gateway.pid) or 0.0
        stop = asyncio.Event()
        t0 = time.perf_counter()
        sampler = asyncio.create_task(self.sample(t0, stop))
        try:
            await self.submit_all()
            self.run.submit_s = time.perf_counter() - t0
            print(
                f"   submitted {options.messages} in {self.run.submit_s:.1f}s; dispatching …",
                flush=True,
            )
            last_progress, last_count, last_print = time.perf_counter(), -1, 0.0
            while True:
                await asyncio.sleep(1)
                dead = self.stack.alive()
                if dead:
                    raise RuntimeError("; ".join(dead))
                count = self.run.samples[-1].received if self.run.samples else 0
                now = time.perf_counter()
                if count != last_count:
                    last_progress, last_count = now, count
                if count >= options.messages:
                    break
                if options.time_limit_s is not None and now - t0 > options.time_limit_s:
                    self.run.problems.append(
                        f"incomplete: time limit of {options.time_limit_s:.0f}s reached at "
                        f"{count}/{options.messages}"
                    )
                    break
                if now - last_progress > STALL_SECONDS:
                    self.run.problems.append(
                        f"no progress for {STALL_SECONDS:.0f}s at {count}/{options.messages}"
                    )
                    break
                if now - last_print >= 30:
                    last_print = now
                    rss = self.run.samples[-1].rss_mb if self.run.samples else None
                    print(
                        f"   {now - t0:6.0f}s  {count:>7}/{options.messages} received"
                        f"  gateway RSS {rss or 0:.0f} MB",
                        flush=True,
                    )
            self.run.dispatch_s = time.perf_counter() - t0
            # A few more seconds: anything extra (a duplicate) would show up now.
            await asyncio.sleep(3)
        finally:
            stop.set()
            await sampler

    # checks

    async def check(self) -> None:
        """No loss, no duplicate, every message `sent` in the ledger."""
        sim = self.stack.sim.url
        expected = self.run.accepted_ids
        # Stop the gateway first (SIGTERM: it finishes and records the sends in flight), so
        # that the simulator's view and the ledger are read at the same standstill.
        self.stack.gateway.stop()
        references: list[str] = []
        outcomes: dict[str, int] = {}
        for account in self.accounts.values():
            stored = await self.http.get(
                f"{sim}/v1/admin/messages", params={"account": account["name"]}
            )
            references += [m["reference"] for m in stored.json()]
            log = await self.http.get(
                f"{sim}/v1/admin/submissions", params={"account": account["name"]}
            )
            for entry in log.json():
                outcomes[entry["outcome"]] = outcomes.get(entry["outcome"], 0) + 1
        unique = set(references)
        ledger = await self.stack.ledger_states()
        waiting = ledger.get("queued", 0) + ledger.get("sending", 0)
        checks = {
            "accepted_by_api": len(expected),
            "stored_at_simulator": len(references),
            "unique_at_simulator": len(unique),
            "missing": len(expected - unique),
            "unexpected": len(unique - expected),
            "simulator_post_outcomes": outcomes,
            "gateway_ledger": ledger,
            # With a time limit, what has not reached the simulator yet must still be waiting
            # in the ledger: then nothing was lost, only not sent yet.
            "missing_still_waiting_in_ledger": waiting,
        }
        self.run.checks = checks
        want = self.options.messages
        cut = any(p.startswith("incomplete") for p in self.run.problems)
        if len(expected) != want:
            self.run.problems.append(f"the API accepted {len(expected)} of {want}")
        if len(references) != len(unique):
            self.run.problems.append(f"the simulator stored {len(references)} for {len(unique)}")
        if checks["unexpected"]:
            self.run.problems.append(f"{checks['unexpected']} unexpected ids at the simulator")
        if cut and checks["missing"] != waiting:
            self.run.problems.append(
                f"{checks['missing']} not at the simulator but {waiting} waiting in the ledger"
            )
        if not cut and (len(unique) != want or checks["missing"]):
            self.run.problems.append(
                f"the simulator has {len(unique)} of {want}; {checks['missing']} missing"
            )
        if outcomes.get("duplicate"):
            self.run.problems.append(f"{outcomes['duplicate']} duplicate POSTs at the simulator")
        if sum(ledger.values()) != want or ledger.get("sent", 0) != len(unique & expected):
            self.run.problems.append(f"gateway ledger: {ledger}")


# --- figures ---------------------------------------------------------------------------------


def time_at(samples: list[Sample], count: float) -> float:
    """When `count` messages had been received (linear between one-second samples)."""
    previous = Sample(0.0, 0, None)
    for s in samples:
        if s.received >= count:
            if s.received == previous.received:
                return s.t
            share = (count - previous.received) / (s.received - previous.received)
            return previous.t + share * (s.t - previous.t)
        previous = s
    return samples[-1].t if samples else 0.0


def rss_figures(run: Run, messages: int) -> dict[str, Any]:
    """Start (idle), peak, end and the slope over the second half of the steady dispatch."""
    during = [s for s in run.samples if s.rss_mb is not None]
    rss = [s.rss_mb for s in during if s.rss_mb is not None]
    reached = run.samples[-1].received if run.samples else 0
    t_half = time_at(run.samples, 0.5 * min(messages, reached))
    t_end = time_at(run.samples, min(0.9 * messages, reached))
    tail = [s for s in during if t_half <= s.t <= t_end]
    slope = 0.0
    if len(tail) >= 3:
        xs = [s.t for s in tail]
        ys = [s.rss_mb or 0.0 for s in tail]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        var = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0
    growth = (tail[-1].rss_mb or 0) - (tail[0].rss_mb or 0) if len(tail) >= 2 else 0.0
    return {
        "idle_mb": round(run.rss_idle_mb, 1),
        "start_mb": round(rss[0], 1) if rss else 0.0,
        "peak_mb": round(max(rss), 1) if rss else 0.0,
        "end_mb": round(rss[-1], 1) if rss else 0.0,
        "slope_mb_per_min_second_half": round(slope * 60, 2),
        "growth_mb_50_to_90_percent": round(growth, 1),
    }


def results_for(run: Run, options: Options) -> list[Result]:
    """The three `load.<db>.*` entries."""
    messages = options.messages
    # Steady part: 10 % to 90 % of the messages (to the last sample when the run was cut).
    reached = run.samples[-1].received if run.samples else 0
    low, high = 0.1 * messages, min(0.9 * messages, reached)
    t10, t90 = time_at(run.samples, low), time_at(run.samples, high)
    steady = (high - low) / (t90 - t10) if t90 > t10 else 0.0
    first = time_at(run.samples, 1)
    overall = reached / (run.dispatch_s - first) if run.dispatch_s > first else 0.0
    p50, p99 = percentile(run.latencies_ms, 50), percentile(run.latencies_ms, 99)
    raw_p50, raw_p99 = percentile(run.raw_latencies_ms, 50), percentile(run.raw_latencies_ms, 99)
    rss = rss_figures(run, messages)
    scale = (
        f"{options.sites} sites in {options.groups} groups (one simulator account each, sites' "
        f"rate {SITE_RATE:g}/s), {messages} SMS, immediate mode, {run.db}; config, scheduler, "
        f"sms_gateway as processes, receipts {'on' if options.receipts else 'off'}"
    )
    durations = {
        "setup_s": round(run.setup_s, 1),
        "submit_s": round(run.submit_s, 1),
        "dispatch_s": round(run.dispatch_s, 1),
        "total_s": round(run.total_s, 1),
    }
    # About 30 points ("seconds received rss_mb"): enough to see the shape, short in the file.
    every = max(1, len(run.samples) // 30)
    trace = [f"{s.t:.0f} {s.received} {s.rss_mb or 0:.0f}" for s in run.samples[::every]]
    return [
        Result(
            f"load.{run.db}.dispatch_rate",
            "messages/s",
            steady,
            run.raw_dispatch_rate,
            notes=f"{scale}. Sustained rate at the simulator between 10% and 90% of the "
            f"messages; baseline: a plain httpx loop POSTing {options.baseline_sample} messages "
            f"straight to the same simulator, {PARALLEL_SENDS} in flight (the gateway's "
            "parallel sends), before the load",
            extra={
                "overall_rate": round(overall, 1),
                "first_receive_s": round(first, 1),
                **durations,
                "checks": run.checks,
            },
        ),
        Result(
            f"load.{run.db}.submit_p99_ms",
            "ms",
            p99,
            raw_p99,
            higher_is_better=False,
            notes=f"{scale}. p99 of {len(run.latencies_ms)} POST /api/v1/sites/{{site}}/messages "
            f"requests of up to {options.batch} messages, {options.submitters} in flight, while "
            "the gateway dispatches; baseline: after each request the same worker publishes "
            "the same number of encoded messages with nats-py publish_async to a scratch "
            "stream (same load, no HTTP, no validation)",
            extra={
                "p50_ms": round(p50, 1),
                "p99_ms": round(p99, 1),
                "max_ms": round(max(run.latencies_ms, default=0), 1),
                "raw_p50_ms": round(raw_p50, 1),
                "raw_p99_ms": round(raw_p99, 1),
                "submit_rate": round(messages / run.submit_s, 1) if run.submit_s else 0,
            },
        ),
        Result(
            f"load.{run.db}.gateway_rss_mb",
            "MB",
            float(rss["peak_mb"]),
            run.rss_idle_mb,
            higher_is_better=False,
            notes=f"{scale}. Peak RSS of the sms_gateway process (VmRSS, every second); "
            "baseline: the same process idle, sites loaded, before the load",
            extra={**rss, "trace_s_received_rss_mb": trace},
        ),
    ]


# --- driver ----------------------------------------------------------------------------------


async def run_one(db: str, options: Options, var: Path) -> list[Result]:
    """Start a stack on `db`, run the load, stop everything; the entries or an exception."""
    began = time.perf_counter()
    stack = Stack(db, var, options)
    bench: LoadRun | None = None
    try:
        print(
            f"== load on {db}: starting nats, simulator, config, scheduler, sms_gateway", flush=True
        )
        await stack.start()
        bench = LoadRun(stack, options)
        await bench.setup()
        bench.run.setup_s = time.perf_counter() - began
        print(
            f"   {options.sites} sites ready in {bench.run.setup_s:.1f}s; raw HTTP loop …",
            flush=True,
        )
        bench.run.raw_dispatch_rate = await bench.raw_dispatch()
        print(
            f"   raw loop {bench.run.raw_dispatch_rate:.0f} messages/s; "
            f"submitting {options.messages} …",
            flush=True,
        )
        await bench.load()
        await bench.check()
        bench.run.total_s = time.perf_counter() - began
        results = results_for(bench.run, options)
        dump = var / f"load-{db}.json"
        dump.write_text(
            json.dumps({r.name: r.entry() for r in results}, indent=2, default=str) + "\n"
        )
        cut = [p for p in bench.run.problems if p.startswith("incomplete")]
        if cut and len(cut) == len(bench.run.problems):
            # Cut by --time-limit with every check that applies passed (nothing lost, nothing
            # sent twice so far): the figures stand, marked as what they are.
            for result in results:
                result.notes = f"CUT RUN ({cut[0]}; checks passed so far). {result.notes}"
            print(f"   {cut[0]}: saved, marked as a cut run", flush=True)
            return results
        if bench.run.problems:
            print_table(results)
            raise RuntimeError(
                f"load on {db} failed its checks: {'; '.join(bench.run.problems)}"
                f" (figures in {dump})"
            )
        return results
    finally:
        if bench is not None:
            await bench.close()
        await stack.stop()


async def main(dbs: list[str], options: Options) -> int:
    """Run each database in turn; save the entries of those that passed."""
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM as Ctrl-C: cancel, so every `finally` stops what it started.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results: list[Result] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="stagger-load-") as tmp:
        for db in dbs:
            var = Path(tmp) / db
            var.mkdir()
            try:
                results += await run_one(db, options, var)
            except Exception as exc:
                failed = True
                print(f"!! {db}: {exc!r}", file=sys.stderr, flush=True)
                traceback.print_exc()
            finally:
                if options.keep_logs is not None:
                    target = options.keep_logs / db
                    target.mkdir(parents=True, exist_ok=True)
                    for path in var.glob("*.log"):
                        (target / path.name).write_bytes(path.read_bytes())
                    for path in var.glob("load-*.json"):
                        (target / path.name).write_bytes(path.read_bytes())
    if results:
        print_table(results)
        if not options.save:
            for result in results:
                print(result.name, json.dumps(result.entry(), ensure_ascii=False))
            print("--no-save: bench/results.json left as it was")
            return 1 if failed else 0
        save(results)
        print(f"results written to bench/results.json ({len(results)} entries)")
    return 1 if failed else 0


def parse(argv: list[str] | None = None) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--groups", type=int, default=4, help="groups = simulator accounts")
    parser.add_argument("--batch", type=int, default=200, help="messages per API request")
    parser.add_argument("--submitters", type=int, default=4, help="API requests in flight")
    parser.add_argument(
        "--baseline-sample", type=int, default=20_000, help="messages in the raw HTTP loop"
    )
    parser.add_argument("--no-receipts", action="store_true", help="no receipt webhooks")
    parser.add_argument("--keep-logs", type=Path, help="copy service logs and figures here")
    parser.add_argument(
        "--time-limit",
        type=float,
        help="minutes to wait for dispatch; a cut run is checked (nothing lost or sent twice "
        "so far) and saved marked as cut",
    )
    parser.add_argument(
        "--no-save", action="store_true", help="print only; keep bench/results.json"
    )
    args = parser.parse_args(argv)
    if args.sites < args.groups or args.messages < args.sites:
        parser.error("need at least one site per group and one message per site")
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    return dbs, Options(
        sites=args.sites,
        messages=args.messages,
        groups=args.groups,
        batch=args.batch,
        submitters=args.submitters,
        baseline_sample=min(args.baseline_sample, args.messages),
        receipts=not args.no_receipts,
        keep_logs=args.keep_logs,
        time_limit_s=args.time_limit * 60 if args.time_limit else None,
        save=not args.no_save,
    )


if __name__ == "__main__":
    selected, opts = parse()
    sys.exit(asyncio.run(main(selected, opts)))
