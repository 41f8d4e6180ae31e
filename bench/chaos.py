"""`python -m bench.chaos` (or `just chaos`): lose a NATS node and a gateway mid-run, lose nothing.

A 3-node JetStream cluster (deploy/nats/cluster, every stream R3) on loopback, PostgreSQL (a fresh
database per run), and Stagger as separate processes with their own NATS users: config, audit,
2 schedulers, 2 SMS gateways, 2 email gateways, plus the SMS provider simulator and the SMTP sink.
A group and its sites are created through the operator path and the config API, with settings
that send at once (SMS immediate mode, email automatic with no delay in a session covering the
whole day); the messages are submitted through the config API, split between SMS and email.

Faults, triggered by what the receivers have taken:

1. at `--leader-at` of the messages delivered, the node leading the OUTBOX stream (the intake
   path: submissions are still going on) is SIGKILLed and started again `--node-down` s later;
2. once the node is back and `--gateway-at` of that channel's messages are delivered, the
   replica of one gateway kind (SMS by default) that sent the most in the last second is
   SIGKILLed mid-send, and started again `--gateway-down` s later (`--no-restart-gateway` leaves
   it dead). Either way the sends it had claimed wait for their lease (60 s) to run out; then a
   replica reconciles each with the provider by our reference before anything is resent.

Then every accepted message must have exactly one terminal event in DISPATCH and have reached
its receiver exactly once: the SMTP sink's journal (unique by Message-ID, which carries our
message id) and the simulator's submissions (unique by our reference; the simulator would
answer a second POST of a reference "duplicate", and that counts as a duplicate here). The
longest stall is the longest gap between consecutive deliveries at the receivers, both
channels together. Results go to bench/results.json as `chaos.*` (see `results`).

Why the SMS gateway is the default victim: after a crash the SMS gateway asks the provider by
our reference whether the interrupted send arrived (exactly once). The email gateway can only
do that through an IMAP Sent folder; without one (this check has no IMAP server) it resends
with the same Message-ID, at-least-once by design (docs/email-gateway.md), so killing it can
legitimately show a duplicate at the sink.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from nats.aio.client import Client

from bench.cluster import LocalCluster, dev_password, stream_leader
from bench.fleet import Child, Fleet, clean_env
from bench.harness import Result, save
from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus.topology import AUDIT, DEADLETTER, DISPATCH, OUTBOX, SETTINGS, STREAMS
from shared.events.schemas.dispatch import TERMINAL_TYPES
from shared.eventstore import EventStore, replay_batches, stream_position
from shared.runtime.nats_server import free_port
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.support.postgres import asyncpg_dsn, create_database, drop_database

GROUP = "chaos"
ALL_WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
SMS_BODY = "Hello from your dental practice: your check-up is due. Reply YES to book."


@dataclass
class Options:
    """What one run does (the command-line options)."""

    messages: int = 20_000
    sms_share: float = 0.5
    sms_sites: int = 4
    email_sites: int = 4
    sms_rate: float = 100.0
    batch: int = 100
    submit_rate: float = 100.0
    leader_at: float = 0.25
    gateway_at: float = 0.55
    node_down: float = 5.0
    gateway_down: float = 5.0
    kill_gateway: str = "sms"
    restart_gateway: bool = True
    stream: str = OUTBOX
    deadline: float = 3600.0
    postgres: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    keep: bool = False
    save: bool = True


@dataclass
class Fault:
    """One injected fault and what followed."""

    what: str
    target: str
    pid: int
    at: float
    delivered_before: int
    restarted_at: float | None = None
    new_pid: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tally:
    """Terminal events read from DISPATCH so far."""

    next_seq: int = 1
    terminal: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    last_terminal_at: float = 0.0


def log(message: str) -> None:
    """One progress line with a UTC clock."""
    print(f"{datetime.now().strftime('%H:%M:%S')} {message}", flush=True)


class ChaosRun:
    """One chaos run: set-up, load, faults, checks, report, clean-up."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.root = Path(tempfile.mkdtemp(prefix="stagger-chaos-"))
        self.db_name = f"stagger_chaos_{os.getpid()}"
        self.db_created = False
        self.cluster = LocalCluster(self.root / "nats")
        self.fleet = Fleet(self.root)
        self.key = generate_key()
        self.replicas: dict[str, list[Child]] = {}
        self.accepted: dict[str, str] = {}  # message id → channel
        self.submitted = 0
        self.submission_done = False
        self.sim_credits: dict[str, float] = {}
        self.delivered = {"sms": 0, "email": 0}
        self.faults: list[Fault] = []
        self.tally = Tally()
        self.started = 0.0
        self.failed = True
        self._sink_offset = 0
        self.exits: list[str] = []  # replicas that stopped without being killed on purpose

    # --- set-up --------------------------------------------------------------------------

    async def setup(self) -> None:
        """PostgreSQL database, cluster, stand-ins and every service replica, all ready."""
        opts = self.opts
        log(f"run directory {self.root}")
        db_url = self.db_url = await create_database(opts.postgres, self.db_name)
        self.db_created = True
        self.cluster.start()
        log(f"cluster up: {', '.join(f'{n.name}={n.url}' for n in self.cluster.nodes)}")
        await asyncio.to_thread(self.cluster.provision, 3)
        log("streams and durables provisioned with 3 replicas")

        sim_port, sink_port = free_port(), free_port()
        self.sim = self.fleet.stand_in(
            "sms_sim",
            "services.sms_provider_sim",
            sim_port,
            clean_env(
                STAGGER_SIM_PORT=str(sim_port),
                STAGGER_SIM_HOST="127.0.0.1",
                STAGGER_LOG_LEVEL="WARNING",
                STAGGER_LOG_FORMAT="json",
            ),
        )
        self.sink_dir = self.root / "smtp-sink"
        self.sink = self.fleet.stand_in(
            "smtp_sink",
            "services.smtp_sink",
            sink_port,
            clean_env(
                STAGGER_SMTP_SINK_PORT=str(sink_port),
                STAGGER_SMTP_SINK_DIR=str(self.sink_dir),
                # The journal (one JSON line per message) is what is counted; no Maildir copy.
                STAGGER_SMTP_SINK_STORE="false",
                STAGGER_LOG_LEVEL="WARNING",
                STAGGER_LOG_FORMAT="json",
            ),
        )
        await self.sim.wait_http("/healthz")
        await self.sink.wait_port()

        base = clean_env(
            STAGGER_NATS_URL=",".join(self.cluster.urls),
            STAGGER_DATABASE_URL=db_url,
            STAGGER_STREAM_REPLICAS="3",
            STAGGER_SECRET_KEY=self.key,
            STAGGER_LOG_LEVEL="WARNING",
            STAGGER_LOG_FORMAT="json",
            STAGGER_STARTUP_TIMEOUT_SECONDS="120",
            # The chaos run sends through the provider simulator.
            STAGGER_SMS_SIMULATOR_ENABLED="true",
        )
        layout = [
            ("config", 1),
            ("audit", 1),
            ("scheduler", 2),
            ("sms_gateway", 2),
            ("email_gateway", 2),
        ]
        for name, count in layout:
            env = {
                **base,
                "STAGGER_NATS_USER": name,
                "STAGGER_NATS_PASSWORD": dev_password(name),
            }
            self.replicas[name] = [self.fleet.service(name, i + 1, env) for i in range(count)]
        await asyncio.gather(
            *(c.wait_http("/readyz", 180) for cs in self.replicas.values() for c in cs)
        )
        log("every replica ready: " + ", ".join(c.name for c in self.fleet.children))

        self.nc = await nats.connect(
            servers=self.cluster.urls,
            user="admin",
            password=dev_password("admin"),
            name="chaos-driver",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=_quiet,
            disconnected_cb=_nothing,
            reconnected_cb=_nothing,
        )
        self.http = httpx.AsyncClient(trust_env=False, timeout=60)

    async def create_sites(self) -> list[tuple[str, str]]:
        """A group, a token, simulator accounts, and the sites (through the config API)."""
        opts = self.opts
        handlers = ConfigHandlers(
            self.nc,
            SettingsStore(EventStore(self.nc, SETTINGS)),
            SecretBox([self.key.encode()]),
            None,
            simulator_enabled=True,
        )
        await handlers.create_group(
            GROUP,
            "Chaos Dental",
            {"profile": {"timezone": "UTC", "region": "AU"}},
            actor="chaos:operator",
        )
        _, token = await issue_token(self.nc, group_id=GROUP, role="group_admin", label="chaos")
        self.api = httpx.AsyncClient(
            base_url=self.replicas["config"][0].url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
            trust_env=False,
        )
        await _until(
            lambda: self._ok(self.api.get("/api/v1/me")), 60, "the config service knows the token"
        )
        sites: list[tuple[str, str]] = []
        sms_count = round(opts.messages * opts.sms_share)
        for i in range(1, opts.sms_sites + 1 if sms_count else 1):
            account, api_key = f"chaos-sms-{i}", secrets.token_hex(12)
            credits = 10 * opts.messages
            answer = await self.http.put(
                f"{self.sim.url}/v1/admin/accounts/{account}",
                json={"api_key": api_key, "credits": credits, "rate_per_second": 100_000},
            )
            answer.raise_for_status()
            self.sim_credits[account] = float(credits)
            sms = {
                "provider": {
                    "kind": "simulator",
                    "account_id": account,
                    "secret": api_key,
                    "base_url": self.sim.url,
                    "rate_per_second": opts.sms_rate,
                },
                "sender_id": "Chaos",
                "mode": "immediate",
                # Every recipient-local minute but one: the guard runs, it does not hold.
                "quiet_hours": {"start": "00:00", "end": "23:59"},
            }
            await self._create_site(f"sms-{i}", {"sms": sms})
            sites.append((f"sms-{i}", "sms"))
        for i in range(1, opts.email_sites + 1 if sms_count < opts.messages else 1):
            email = {
                "enabled": True,
                "address": f"front@mail-{i}.example",
                "display_name": f"Chaos Dental {i}",
                "smtp": {"host": "127.0.0.1", "port": self.sink.port, "security": "none"},
                "mode": "automatic",
                "sessions": [{"days": ALL_WEEK, "start": "00:00", "end": "23:59"}],
                "check_every_minutes": 1,
                "per_minute": 0,
                "provider_preset": "custom",
            }
            await self._create_site(f"mail-{i}", {"email": email})
            sites.append((f"mail-{i}", "email"))
        for site, channel in sites:
            if channel == "sms":
                # The wizard's provider test: also proves a gateway holds the site's settings.
                answer = await self.api.post(f"/api/v1/sites/{site}/provider-test")
                if answer.status_code != 200 or not answer.json().get("ok"):
                    raise RuntimeError(f"provider test of {site} failed: {answer.text}")
        # Let both replicas of each gateway and both schedulers follow the new settings.
        await asyncio.sleep(3)
        log(f"group {GROUP}: {len(sites)} sites ({', '.join(s for s, _ in sites)})")
        return sites

    async def _create_site(self, site_id: str, settings: dict[str, Any]) -> None:
        body = {
            "site_id": site_id,
            "name": f"Chaos {site_id}",
            "timezone": "UTC",
            "region": "AU",
            "settings": settings,
        }
        for _ in range(5):
            answer = await self.api.post(f"/api/v1/groups/{GROUP}/sites", json=body)
            if answer.status_code == 201:
                return
            # The create may have been stored although its answer says otherwise (seen: 404
            # while the config service's read of the new site lagged): look before retrying.
            await asyncio.sleep(1)
            if (await self.api.get(f"/api/v1/sites/{site_id}")).status_code == 200:
                log(f"site {site_id}: created although answered {answer.status_code}")
                return
        raise RuntimeError(f"site {site_id} not created: {answer.status_code} {answer.text}")

    @staticmethod
    async def _ok(request: Any) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return bool((await request).status_code == 200)
        return False

    # --- load ----------------------------------------------------------------------------

    def batches(self, sites: list[tuple[str, str]]) -> list[tuple[str, str, list[dict[str, Any]]]]:
        """Every submission, interleaved across sites: (site, channel, messages)."""
        opts = self.opts
        sms_total = round(opts.messages * opts.sms_share)
        per_channel = {"sms": sms_total, "email": opts.messages - sms_total}
        queues: list[list[tuple[str, str, list[dict[str, Any]]]]] = []
        number = 0
        for channel in ("sms", "email"):
            mine = [s for s, c in sites if c == channel]
            for k, site in enumerate(mine):
                share = per_channel[channel] // len(mine) + (
                    1 if k < per_channel[channel] % len(mine) else 0
                )
                messages = []
                for j in range(share):
                    number += 1
                    key = f"{site}-{j}"
                    if channel == "sms":
                        messages.append(
                            {"to": f"+614{number:08d}", "body": SMS_BODY, "idempotency_key": key}
                        )
                    else:
                        messages.append(
                            {
                                "to": f"patient{number}@example.org",
                                "subject": f"Your recall {number}",
                                "body": "Time for your check-up: call us to book.",
                                "category": "reminder",
                                "idempotency_key": key,
                            }
                        )
                queues.append(
                    [
                        (site, channel, messages[i : i + opts.batch])
                        for i in range(0, len(messages), opts.batch)
                    ]
                )
        ordered = []
        while any(queues):
            for queue in queues:
                if queue:
                    ordered.append(queue.pop(0))
        return ordered

    async def submit(self, batches: list[tuple[str, str, list[dict[str, Any]]]]) -> None:
        """POST every batch to the config API at `submit_rate`, retrying (same keys) until 202."""
        began = time.monotonic()
        for site, channel, messages in batches:
            delay = 0.5
            while True:
                try:
                    answer = await self.api.post(
                        f"/api/v1/sites/{site}/messages",
                        json={"channel": channel, "messages": messages},
                    )
                    if answer.status_code == 202:
                        break
                    problem = f"{answer.status_code} {answer.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                # The idempotency keys make the retry the same messages (stored once).
                log(f"submission to {site} refused ({problem}); retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            for item in answer.json()["messages"]:
                self.accepted[item["message_id"]] = channel
            self.submitted += len(messages)
            ahead = self.submitted / self.opts.submit_rate - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
        self.submission_done = True
        log(f"submission done: {len(self.accepted)} messages accepted")

    # --- observing -----------------------------------------------------------------------

    async def count_delivered(self) -> None:
        """Receivers' counts: the sink's journal lines and the simulator's debits."""
        journal = self.sink_dir / "received.jsonl"
        if journal.exists():
            with journal.open("rb") as handle:
                handle.seek(self._sink_offset)
                chunk = handle.read()
            complete = chunk.rfind(b"\n") + 1
            self._sink_offset += complete
            self.delivered["email"] += chunk[:complete].count(b"\n")
        if self.sim_credits:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                answer = await self.http.get(f"{self.sim.url}/v1/admin/accounts", timeout=10)
                now = {a["account"]: float(a["credits"]) for a in answer.json()}
                # One credit per message (one GSM-7 segment); the default account is not ours.
                self.delivered["sms"] = round(
                    sum(start - now.get(a, start) for a, start in self.sim_credits.items())
                )

    @property
    def total_delivered(self) -> int:
        """Both channels."""
        return self.delivered["sms"] + self.delivered["email"]

    async def read_dispatch(self) -> None:
        """Fold new DISPATCH events into the tally of terminal events (resumable, bounded)."""
        try:
            await asyncio.wait_for(self._read_dispatch(), 60)
        except TimeoutError:
            log("reading DISPATCH took over 60 s; will resume")

    async def _read_dispatch(self) -> None:
        tally = self.tally
        try:
            last = (await self.nc.jetstream(timeout=5).stream_info(DISPATCH)).state.last_seq
            if last < tally.next_seq:
                return
            async for batch in replay_batches(
                self.nc, DISPATCH, from_sequence=tally.next_seq, until_sequence=last
            ):
                for msg in batch:
                    # Headers only (binary mode): `ce-type` is "<type>.v<version>".
                    ce_type = (msg.headers or {}).get("ce-type", "").rpartition(".v")[0]
                    if ce_type in TERMINAL_TYPES:
                        message_id = json.loads(msg.data)["message_id"]
                        event_id = (msg.headers or {}).get("ce-id", "")
                        tally.terminal.setdefault(message_id, []).append((ce_type, event_id))
                        tally.last_terminal_at = time.time()
                    tally.next_seq = stream_position(msg)[0] + 1
        except Exception as exc:  # a node going away mid-read: resume from next_seq later
            log(f"reading DISPATCH interrupted ({type(exc).__name__}: {exc}); will resume")

    def all_terminal(self) -> bool:
        """Every accepted message has at least one terminal event."""
        return self.submission_done and all(m in self.tally.terminal for m in self.accepted)

    # --- faults --------------------------------------------------------------------------

    async def kill_leader(self) -> None:
        """SIGKILL the node leading the chosen stream; start it again after `node_down` s."""
        stream = self.opts.stream
        leaders: dict[str, str | None] = {}
        for spec in STREAMS:
            with contextlib.suppress(Exception):
                leaders[spec.name] = await stream_leader(self.nc, spec.name)
        victim = leaders.get(stream)
        if victim is None:
            raise RuntimeError(f"{stream} has no leader to kill")
        meta = await asyncio.to_thread(self.cluster.meta_leader)
        pid = self.cluster.kill(victim)
        fault = Fault(
            "nats node SIGKILL",
            victim,
            pid,
            time.time(),
            self.total_delivered,
            notes={
                "why": f"leader of {stream}",
                "meta_leader_before": meta,
                "streams_it_led": sorted(s for s, n in leaders.items() if n == victim),
            },
        )
        self.faults.append(fault)
        log(f"FAULT: SIGKILL {victim} (pid {pid}), leader of {stream}; led {fault.notes}")
        killed_at = time.monotonic()
        new_leader = None
        while time.monotonic() - killed_at < 60:
            with contextlib.suppress(Exception):
                new_leader = await stream_leader(self.nc, stream, timeout=2)
                if new_leader and new_leader != victim:
                    break
            await asyncio.sleep(0.2)
        fault.notes["new_leader"] = new_leader
        fault.notes["election_seconds"] = round(time.monotonic() - killed_at, 2)
        fault.notes["meta_leader_after"] = await asyncio.to_thread(self.cluster.meta_leader)
        log(f"{stream} leader now {new_leader} after {fault.notes['election_seconds']} s")
        await asyncio.sleep(max(0.0, self.opts.node_down - (time.monotonic() - killed_at)))
        # On the event loop's (main) thread: the restarted server dies with this thread only.
        fault.new_pid = self.cluster.restart(victim)
        fault.restarted_at = time.time()
        log(f"{victim} started again (pid {fault.new_pid})")

    async def kill_gateway(self) -> None:
        """SIGKILL the busier replica of the chosen gateway kind; maybe start it again."""
        kind = f"{self.opts.kill_gateway}_gateway"
        replicas = self.replicas[kind]
        # Wait (a bounded while) for a moment when a replica is sending: the crash must
        # interrupt sends in flight, not an idle process.
        for _ in range(60):
            before = [await _metric(self.http, r.url, "stagger_sends_total") for r in replicas]
            await asyncio.sleep(1.0)
            after = [await _metric(self.http, r.url, "stagger_sends_total") for r in replicas]
            if any(a > b for a, b in zip(after, before, strict=True)):
                break
        busiest = max(range(len(replicas)), key=lambda i: after[i] - before[i])
        victim = replicas[busiest]
        pid = victim.kill()
        fault = Fault(
            "gateway SIGKILL",
            victim.name,
            pid,
            time.time(),
            self.total_delivered,
            notes={"sends_last_second": [a - b for a, b in zip(after, before, strict=True)]},
        )
        self.faults.append(fault)
        log(f"FAULT: SIGKILL {victim.name} (pid {pid}) while sending")
        if self.opts.restart_gateway:
            await asyncio.sleep(self.opts.gateway_down)
            victim.start()
            fault.new_pid, fault.restarted_at = victim.pid, time.time()
            log(f"{victim.name} started again (pid {victim.pid})")
            await victim.wait_http("/readyz", 180)
            log(f"{victim.name} ready again")

    # --- the run -------------------------------------------------------------------------

    async def execute(self) -> dict[str, Any]:
        """Set up, load, inject the faults, wait for every outcome, check and report."""
        opts = self.opts
        await self.setup()
        sites = await self.create_sites()
        batches = self.batches(sites)
        sms_total = round(opts.messages * opts.sms_share)
        self.expected = {"sms": sms_total, "email": opts.messages - sms_total}
        self.started = time.time()
        log(f"submitting {opts.messages} messages in {len(batches)} batches")
        submitter = asyncio.create_task(self.submit(batches))
        faults: asyncio.Task[None] | None = None
        leader_done = gateway_started = False
        deadline = time.monotonic() + opts.deadline
        last_print = 0.0
        last_read = 0.0
        try:
            while True:
                await asyncio.sleep(0.5)
                if submitter.done() and submitter.exception() is not None:
                    raise submitter.exception()  # type: ignore[misc]
                await self.count_delivered()
                self.watch_processes()
                done = self.total_delivered
                if faults is None and done >= opts.leader_at * opts.messages:
                    faults = asyncio.create_task(self.kill_leader())
                if faults is not None and faults.done():
                    if faults.exception() is not None:
                        raise faults.exception()  # type: ignore[misc]
                    leader_done = True
                victim_done = self.delivered[opts.kill_gateway]
                if (
                    leader_done
                    and not gateway_started
                    and victim_done >= opts.gateway_at * self.expected[opts.kill_gateway]
                ):
                    gateway_started = True
                    faults = asyncio.create_task(self.kill_gateway())
                if time.monotonic() - last_read > 3:
                    last_read = time.monotonic()
                    await self.read_dispatch()
                if time.monotonic() - last_print > 10:
                    last_print = time.monotonic()
                    log(
                        f"submitted {self.submitted}/{opts.messages}, delivered "
                        f"{done} (sms {self.delivered['sms']}, email {self.delivered['email']}),"
                        f" terminal {len(self.tally.terminal)}"
                    )
                if (
                    gateway_started
                    and faults is not None
                    and faults.done()
                    and self.all_terminal()
                    and done >= len(self.accepted)
                ):
                    break
                if time.monotonic() > deadline:
                    log("DEADLINE reached before every message had its outcome")
                    break
            # Late duplicates (a resend after a lease ran out) would show up now.
            await asyncio.sleep(5)
            await self.read_dispatch()
            await self.count_delivered()
        finally:
            for task in (submitter, faults):
                if task is not None and not task.done():
                    task.cancel()
        return await self.check()

    def watch_processes(self) -> None:
        """Note every replica that stopped on its own (a crash is a finding, never masked)."""
        for child in self.fleet.children:
            process = child.process
            if process is None or process.poll() is None:
                continue
            if process.returncode == -signal.SIGKILL and child.history[-1][0] == "killed":
                continue  # the fault we injected
            note = f"{child.name} (pid {process.pid}) exited with {process.returncode}"
            if note not in self.exits:
                self.exits.append(note)
                log(f"UNEXPECTED EXIT: {note}\n{child.tail(15)}")

    async def stuck_rows(self, message_ids: list[str]) -> dict[str, int]:
        """Where messages without an outcome are in the gateways' queues: state and owner."""
        found: dict[str, int] = {}
        conn = await asyncpg.connect(asyncpg_dsn(self.db_url))
        try:
            for table in ("sms_messages", "email_messages"):
                rows = await conn.fetch(
                    f"SELECT state, lease_owner, count(*) AS n FROM {table} "
                    "WHERE message_id = ANY($1::text[]) GROUP BY state, lease_owner",
                    message_ids,
                )
                for r in rows:
                    found[f"{table}:{r['state']}:{r['lease_owner']}"] = int(r["n"])
        finally:
            await conn.close()
        return found

    async def audit_positions(self, patience: float = 120) -> dict[str, Any]:
        """Wait until the audit trail reaches AUDIT's last message; report every projection."""
        last = (await self.nc.jetstream(timeout=10).stream_info(AUDIT)).state.last_seq
        deadline = time.monotonic() + patience
        positions: dict[str, int] = {}
        while True:
            conn = await asyncpg.connect(asyncpg_dsn(self.db_url))
            try:
                rows = await conn.fetch("SELECT projection, position FROM projection_positions")
            finally:
                await conn.close()
            positions = {r["projection"]: int(r["position"]) for r in rows}
            # The trail takes every AUDIT message; filtered projections stop at their last
            # matching one, so only the trail's position can be compared with the stream's end.
            if positions.get("audit.trail", 0) >= last:
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        return {"audit_stream_last_seq": last, "positions": positions}

    # --- checks and report ---------------------------------------------------------------

    async def check(self) -> dict[str, Any]:
        """Count at the receivers and in DISPATCH; compute stalls; build the report."""
        email_ids = {m for m, c in self.accepted.items() if c == "email"}
        sms_ids = {m for m, c in self.accepted.items() if c == "sms"}
        deliveries: list[tuple[float, str]] = []

        seen_email: dict[str, int] = {}
        journal = self.sink_dir / "received.jsonl"
        if journal.exists():
            for line in journal.read_text().splitlines():
                record = json.loads(line)
                header = record.get("message_id") or ""
                ours = header.strip("<>").split("@", 1)[0]
                seen_email[ours] = seen_email.get(ours, 0) + 1
                deliveries.append((float(record["received_at"]), "email"))

        messages = (await self.http.get(f"{self.sim.url}/v1/admin/messages", timeout=60)).json()
        submissions = (
            await self.http.get(f"{self.sim.url}/v1/admin/submissions", timeout=60)
        ).json()
        seen_sms: dict[str, int] = {}
        for message in messages:
            seen_sms[message["reference"]] = seen_sms.get(message["reference"], 0) + 1
            deliveries.append((datetime.fromisoformat(message["accepted_at"]).timestamp(), "sms"))
        resubmitted = sum(1 for s in submissions if s["outcome"] == "duplicate")
        outcomes: dict[str, int] = {}
        for s in submissions:
            outcomes[s["outcome"]] = outcomes.get(s["outcome"], 0) + 1

        terminal = self.tally.terminal
        by_type: dict[str, int] = {}
        for events in terminal.values():
            for ce_type, _ in events:
                by_type[ce_type] = by_type.get(ce_type, 0) + 1
        deadletters = 0
        with contextlib.suppress(Exception):
            info = await self.nc.jetstream(timeout=5).stream_info(DEADLETTER)
            deadletters = info.state.messages

        audit = await self.audit_positions()
        audit_follows = audit["positions"].get("audit.trail", 0) >= audit["audit_stream_last_seq"]

        lost_email = sorted(email_ids - seen_email.keys())
        lost_sms = sorted(sms_ids - seen_sms.keys())
        duplicates_email = sum(n - 1 for n in seen_email.values() if n > 1)
        duplicates_sms = sum(n - 1 for n in seen_sms.values() if n > 1) + resubmitted
        unexpected = sorted((seen_email.keys() - email_ids) | (seen_sms.keys() - sms_ids))
        no_outcome = sorted(m for m in self.accepted if m not in terminal)
        two_outcomes = sorted(m for m, events in terminal.items() if len(events) > 1)

        no_outcome_early = sorted(m for m in self.accepted if m not in terminal)
        stuck: dict[str, int] = {}
        if no_outcome_early:
            try:
                stuck = await self.stuck_rows(no_outcome_early)
            except Exception as exc:  # diagnostics only: never lose the report over them
                log(f"could not look up the messages without an outcome: {exc!r}")

        deliveries.sort()
        times = [t for t, _ in deliveries]
        stall, stall_at = _longest_gap(times)
        sms_stall, _ = _longest_gap([t for t, c in deliveries if c == "sms"])
        email_stall, _ = _longest_gap([t for t, c in deliveries if c == "email"])
        first_fault = self.faults[0].at if self.faults else (times[-1] if times else 0.0)
        before = [t for t in times if t < first_fault]
        # Both rates count from the first submission, so they compare like with like.
        pre_rate = len(before) / (first_fault - self.started) if before else 0.0
        pre_stall, _ = _longest_gap(before)
        duration = (max(times[-1], self.tally.last_terminal_at) if times else 0.0) - self.started
        overall_rate = len(times) / (times[-1] - self.started) if times else 0.0
        around: list[float | None] = []
        for fault in self.faults:
            later = [t for t in times if t >= fault.at]
            earlier = [t for t in times if t < fault.at]
            if later and earlier:
                around.append(round(later[0] - earlier[-1], 2))
            else:
                around.append(None)

        report: dict[str, Any] = {
            "messages": self.opts.messages,
            "accepted": len(self.accepted),
            "accepted_sms": len(sms_ids),
            "accepted_email": len(email_ids),
            "received_sms_unique": len(seen_sms),
            "received_email_unique": len(seen_email),
            "lost": len(lost_email) + len(lost_sms),
            "lost_sms": len(lost_sms),
            "lost_email": len(lost_email),
            "duplicates": duplicates_email + duplicates_sms,
            "duplicates_sms": duplicates_sms,
            "duplicates_email": duplicates_email,
            "unexpected_at_receivers": len(unexpected),
            "without_terminal_event": len(no_outcome),
            "with_two_terminal_events": len(two_outcomes),
            "terminal_events": by_type,
            "simulator_submissions": outcomes,
            "deadletters": deadletters,
            "audit_caught_up": audit_follows,
            "without_terminal_event_where": stuck,
            "projection_positions": audit,
            "unexpected_exits": self.exits,
            "longest_stall_s": round(stall, 2),
            "longest_stall_at_s": round(stall_at - self.started, 1) if times else None,
            "longest_stall_sms_s": round(sms_stall, 2),
            "longest_stall_email_s": round(email_stall, 2),
            "pre_fault_longest_stall_s": round(pre_stall, 2),
            "gap_across_each_fault_s": around,
            "pre_fault_rate": round(pre_rate, 1),
            "overall_rate": round(overall_rate, 1),
            "duration_s": round(duration, 1),
            "faults": [
                {
                    "what": f.what,
                    "target": f.target,
                    "pid": f.pid,
                    "at_s": round(f.at - self.started, 1),
                    "delivered_before": f.delivered_before,
                    "restarted_after_s": round(f.restarted_at - f.at, 1)
                    if f.restarted_at
                    else None,
                    "new_pid": f.new_pid,
                    **f.notes,
                }
                for f in self.faults
            ],
            "samples": {
                "lost": (lost_sms + lost_email)[:5],
                "no_outcome": no_outcome[:5],
                "two_outcomes": two_outcomes[:5],
                "unexpected": unexpected[:5],
            },
        }
        report["passed"] = (
            report["accepted"] == self.opts.messages
            and report["lost"] == 0
            and report["duplicates"] == 0
            and report["unexpected_at_receivers"] == 0
            and report["without_terminal_event"] == 0
            and report["with_two_terminal_events"] == 0
            and len(self.faults) == 2
            and audit_follows
            and not self.exits
        )
        self.failed = not report["passed"]
        return report

    # --- clean-up ------------------------------------------------------------------------

    async def close_clients(self) -> None:
        """Close the driver's own connections."""
        for client in (getattr(self, "api", None), getattr(self, "http", None)):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        nc: Client | None = getattr(self, "nc", None)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    def cleanup(self) -> None:
        """Stop every process, drop the database, remove the run directory (kept on failure)."""
        self.fleet.stop_all(timeout=25)
        self.cluster.stop()
        if self.db_created:
            try:
                asyncio.run(drop_database(self.opts.postgres, self.db_url))
            except Exception as exc:
                print(f"could not drop database {self.db_name}: {exc}", file=sys.stderr)
        if self.failed or self.opts.keep:
            print(f"logs kept in {self.root}", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def _longest_gap(times: list[float]) -> tuple[float, float]:
    """The longest gap between consecutive instants (sorted) and where it began."""
    best, at = 0.0, times[0] if times else 0.0
    for a, b in itertools.pairwise(times):
        if b - a > best:
            best, at = b - a, a
    return best, at


async def _metric(http: httpx.AsyncClient, url: str, name: str) -> float:
    """The sum of a Prometheus counter over all its series (0 when unreachable)."""
    try:
        text = (await http.get(f"{url}/metrics", timeout=5)).text
    except httpx.HTTPError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"timed out waiting until {what}")


async def _quiet(exc: Exception) -> None:
    """nats-py prints every reconnect error; a node down is expected here."""


async def _nothing() -> None:
    """Connection callbacks: nothing to do."""


def results(report: dict[str, Any], opts: Options) -> list[Result]:
    """`chaos.*` entries for bench/results.json.

    A chaos run has no raw baseline; the baseline of each entry is the same run before the first
    fault: the delivery rate before the node was killed, and the longest stall before it.
    """
    gateway = next((f for f in report["faults"] if f["what"] == "gateway SIGKILL"), None)
    node = next((f for f in report["faults"] if f["what"] == "nats node SIGKILL"), None)
    summary = (
        f"{report['accepted']} messages ({report['accepted_sms']} SMS, "
        f"{report['accepted_email']} email) through a 3-node R3 cluster, 2 schedulers, 2 SMS and "
        f"2 email gateways on PostgreSQL; SIGKILL of {node['target'] if node else '?'} "
        f"({node['why'] if node else '?'}) then of {gateway['target'] if gateway else '?'} "
        f"({'restarted' if opts.restart_gateway else 'not restarted'}): lost "
        f"{report['lost']}, duplicates {report['duplicates']}, without one terminal event "
        f"{report['without_terminal_event'] + report['with_two_terminal_events']}"
    )
    details = {
        k: report[k]
        for k in (
            "lost",
            "duplicates",
            "without_terminal_event",
            "with_two_terminal_events",
            "duration_s",
            "longest_stall_s",
            "longest_stall_sms_s",
            "longest_stall_email_s",
            "gap_across_each_fault_s",
            "faults",
            "passed",
        )
    }
    return [
        Result(
            "chaos.delivery_rate",
            "messages/s",
            report["overall_rate"],
            report["pre_fault_rate"],
            notes=f"{summary}. Value: deliveries at the receivers ÷ time from the first "
            f"submission to the last delivery, faults included; baseline: the same run's "
            f"deliveries before the first fault ÷ time from the first submission to it.",
            extra=details,
        ),
        Result(
            "chaos.longest_stall",
            "s",
            report["longest_stall_s"],
            report["pre_fault_longest_stall_s"],
            higher_is_better=False,
            notes=f"{summary}. Value: the longest gap between consecutive deliveries at the SMTP "
            f"sink and the simulator together over the whole run; baseline: the longest gap "
            f"before the first fault.",
        ),
    ]


def parse(argv: list[str] | None) -> Options:
    """Command-line options."""
    d = Options()
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=d.messages, help="messages in the run")
    p.add_argument("--sms-share", type=float, default=d.sms_share, help="fraction sent by SMS")
    p.add_argument("--sms-sites", type=int, default=d.sms_sites)
    p.add_argument("--email-sites", type=int, default=d.email_sites)
    p.add_argument(
        "--sms-rate", type=float, default=d.sms_rate, help="each SMS account's rate per second"
    )
    p.add_argument("--batch", type=int, default=d.batch, help="messages per API submission")
    p.add_argument("--submit-rate", type=float, default=d.submit_rate, help="messages/s submitted")
    p.add_argument("--leader-at", type=float, default=d.leader_at, help="fraction delivered")
    p.add_argument(
        "--gateway-at", type=float, default=d.gateway_at, help="fraction of its channel delivered"
    )
    p.add_argument("--node-down", type=float, default=d.node_down, help="seconds")
    p.add_argument("--gateway-down", type=float, default=d.gateway_down, help="seconds")
    p.add_argument("--kill-gateway", choices=("sms", "email"), default=d.kill_gateway)
    p.add_argument(
        "--no-restart-gateway",
        dest="restart_gateway",
        action="store_false",
        help="leave the killed gateway replica dead",
    )
    p.add_argument("--stream", default=d.stream, help="whose leader's node is killed")
    p.add_argument("--deadline", type=float, default=d.deadline, help="seconds for the run")
    p.add_argument(
        "--postgres",
        default=d.postgres,
        help="admin URL of the PostgreSQL server (a database is created and dropped)",
    )
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    p.add_argument("--no-save", dest="save", action="store_false", help="leave results.json")
    ns = p.parse_args(argv)
    return Options(**vars(ns))


def print_summary(report: dict[str, Any]) -> None:
    """The run in a few lines."""
    print()
    print(f"chaos: {'PASSED' if report['passed'] else 'FAILED'}")
    for key in (
        "accepted",
        "received_sms_unique",
        "received_email_unique",
        "lost",
        "duplicates",
        "without_terminal_event",
        "with_two_terminal_events",
        "terminal_events",
        "simulator_submissions",
        "deadletters",
        "audit_caught_up",
        "without_terminal_event_where",
        "projection_positions",
        "unexpected_exits",
        "longest_stall_s",
        "longest_stall_at_s",
        "longest_stall_sms_s",
        "longest_stall_email_s",
        "pre_fault_longest_stall_s",
        "gap_across_each_fault_s",
        "pre_fault_rate",
        "overall_rate",
        "duration_s",
    ):
        print(f"  {key:<28} {report[key]}")
    for fault in report["faults"]:
        print(f"  fault: {json.dumps(fault)}")
    if not report["passed"]:
        print(f"  samples: {json.dumps(report['samples'])}")


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM behaves like Ctrl-C: unwind, then clean up every process.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when nothing was lost or duplicated, 1 when something was, 2 on error."""
    opts = parse(argv)
    run = ChaosRun(opts)
    signal.signal(signal.SIGTERM, _terminate)
    code = 2
    try:

        async def go() -> dict[str, Any]:
            try:
                return await run.execute()
            finally:
                await run.close_clients()

        report = asyncio.run(go())
        print_summary(report)
        if opts.save:
            save(results(report, opts))
            print("chaos.* written to bench/results.json")
        code = 0 if report["passed"] else 1
    except KeyboardInterrupt:
        print("interrupted: stopping every process", file=sys.stderr)
        code = 130
    except Exception:
        traceback.print_exc()
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if code != 0:
            run.failed = True
        run.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
