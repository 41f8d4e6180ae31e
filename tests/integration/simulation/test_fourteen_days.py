"""Fourteen simulated days, 50 sites, mixed sessions and clock changes: the delivery promise.

Every send falls inside its site's sessions (local time, DST-correct; immediate SMS is bound
only by blackouts) and, for SMS, inside the recipient's quiet hours; no message reaches the
provider twice; each site's totals per channel equal what the forecast predicted.

Why this shape. The real services read the wall clock in many places (the engine, its SQL
queue and limiter, the SMS adapter) and pace with `asyncio.sleep`, so running them as
processes for 14 days is impossible in a test. Instead:

* **Scheduler**: the real `TickTimer` with the real planning (`SiteDirectory` → `plan_site`),
  driven by the injected `SimulatedClock`, publishes every tick through `JetStreamTicks` to a
  real nats-server (the session fixture), in steps of one simulated day.
* **Gateway**: the ticks are taken off the `TICKS` stream through the gateways' own durable
  consumers and handed, in time order, to the real `DispatchEngine.take_tick` (decode, expiry,
  claim up to the budget from its SQLite queue, quiet-hours guard, account limiter, spacing,
  group-committed outcomes). The engine sees simulated time through `harness.EngineClock`
  (its module docstring says exactly what is replaced). Sites are created through the config
  service's handlers and messages accepted by its submission code; the engines take them in
  through their real intake from the `OUTBOX` stream.
* **Receiving end**: the SMS provider and SMTP are doubles that record each message and the
  simulated instant it reached them (`harness.Receiver`).
* **Expected totals** come from `shared.domain.planning.site_forecast` — what the config
  API answers — for the same settings, workload and window.

Window: Sun 21 Mar 2027 12:00 UTC + 14 days. Europe springs forward on 28 Mar; Sydney,
Melbourne, Hobart, Adelaide, Lord Howe (30 minutes), Auckland and Santiago fall back on 3/4 Apr.
The US changes on 14 Mar, outside any 14-day window that also holds a southern change, so
its sites run without one. Run it alone with
`.venv/bin/python -m pytest -q tests/integration/simulation` (marked `slow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tempfile
import time as timer_clock
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from nats.aio.client import Client

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, publish, validate
from services.scheduler.adapters.clock import SimulatedClock
from services.scheduler.adapters.issuing import JetStreamTicks
from services.scheduler.adapters.projection import SiteRow
from services.scheduler.handlers.directory import SiteDirectory as SchedulerSites
from services.scheduler.handlers.timer import TickTimer
from shared.bus.topology import SETTINGS
from shared.domain.clock_changes import clock_changes
from shared.domain.forecast import capacity_between
from shared.domain.planning import Channel, plan, site_forecast
from shared.domain.schedule import ImmediatePace
from shared.domain.site_settings import SiteSettings
from shared.eventstore import EventStore
from shared.secrets import SecretBox, generate_key
from tests.integration.simulation.checks import in_quiet_hours, send_problems
from tests.integration.simulation.harness import (
    EngineClock,
    Receiver,
    SimGateway,
    engine_on_simulated_time,
)
from tests.integration.simulation.workload import CHANGING, END, GROUP, START, SiteSpec, sites

pytestmark = pytest.mark.slow

STEP = timedelta(hours=24)
ACCOUNT_PERIOD = timedelta(hours=3)
"""Immediate-mode account ticks every 3 hours (`STAGGER_SCHEDULER_ACCOUNT_TICK_SECONDS`)
instead of every second, so two weeks stay a few hundred ticks; each carries 3 hours of the
account's rate."""
UNBOUNDED_WORKLOAD = 20
"""Messages queued where the pace sets no limit (immediate SMS, email with no delay)."""
MICROSECOND = timedelta(microseconds=1)


def database_dir(tmp_path: Path) -> Path:
    """Memory-backed storage when the machine has it: the gateway's SQLite commits thousands
    of times and a slow shared disk would decide the run time, not the code under test."""
    shm = Path("/dev/shm")
    if shm.is_dir():
        return Path(tempfile.mkdtemp(prefix="stagger-sim-", dir=shm))
    return tmp_path


@dataclass(frozen=True)
class Sent:
    """What the test knows about one accepted message."""

    site: SiteSpec
    channel: str
    zone: str
    """Whose quiet hours apply (SMS): the zone the patient's number belongs to."""


def workload_size(spec: SiteSpec, channel: Channel, settings: SiteSettings) -> int:
    """How many messages to queue: a quarter more than the window's capacity where the
    sessions should bind, half of it where everything should go."""
    schedule, pace, _ = plan(settings, channel, spec.site_id)
    if isinstance(pace, ImmediatePace) or (channel == "sms" and spec.immediate):
        return UNBOUNDED_WORKLOAD
    capacity = capacity_between(schedule, pace, START, END)
    return capacity + capacity // 4 + 5 if spec.oversupply else max(1, capacity // 2)


async def submit(
    nc: Client, handlers: ConfigHandlers, spec: SiteSpec, channel: Channel, count: int
) -> dict[str, Sent]:
    """Accept `count` messages the way the config API does; returns id → what was sent."""
    site = await handlers.site(spec.site_id)
    messages = []
    zones = []
    for i in range(count):
        if channel == "sms":
            to, zone = spec.recipient(i)
            messages.append(
                {"to": to, "body": f"Your check-up is due ({i}).", "idempotency_key": f"s{i}"}
            )
        else:
            to, zone = f"patient{i}@mail.example.org", spec.zone
            messages.append(
                {
                    "to": to,
                    "subject": "Recall",
                    "body": f"Time for a check-up ({i}).",
                    "idempotency_key": f"e{i}",
                }
            )
        zones.append(zone)
    batch = SubmissionIn.model_validate({"channel": channel, "messages": messages})
    accepted, outgoing = validate(site, batch, "user:reception")
    await publish(nc, accepted, outgoing)
    return {
        item.message_id: Sent(spec, channel, zone)
        for item, zone in zip(accepted, zones, strict=True)
    }


async def test_fourteen_days_fifty_sites(
    nc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    began = timer_clock.monotonic()
    specs = sites()
    handlers = ConfigHandlers(
        nc,
        SettingsStore(EventStore(nc, SETTINGS)),
        SecretBox([generate_key().encode()]),
        None,
        simulator_enabled=True,
    )
    await handlers.create_group(GROUP, "Simulated dental group", {}, actor="user:it")
    for spec in specs:
        await handlers.create_site(
            GROUP,
            spec.site_id,
            {"name": spec.site_id, "timezone": spec.zone},
            spec.patch(),
            actor="user:it",
        )

    clock = EngineClock(START)
    engine_on_simulated_time(monkeypatch, clock)
    receiver = Receiver(clock)
    storage = database_dir(tmp_path)
    gateway = SimGateway(nc, f"sqlite+aiosqlite:///{storage / 'gateway.db'}", receiver)
    await gateway.start()
    try:
        await gateway.wait_for_sites([s.site_id for s in specs])

        # The workload, and what the forecast says of it.
        messages: dict[str, Sent] = {}
        expected: dict[tuple[str, str], int] = {}
        queued: Counter[str] = Counter()
        for spec in specs:
            known = gateway.sites.get(spec.site_id)
            assert known is not None
            settings = known.settings
            channels: tuple[Channel, ...] = ("sms", "email") if spec.email else ("sms",)
            for channel in channels:
                count = workload_size(spec, channel, settings)
                answer = site_forecast(
                    settings, channel, new=count, horizon_days=14, start=START, site_id=spec.site_id
                )
                expected[(spec.site_id, channel)] = answer["fit_within_horizon"]
                fresh = await submit(nc, handlers, spec, channel, count)
                assert len(fresh) == count
                messages.update(fresh)
                queued[channel] += count
        await gateway.take_in("sms", queued["sms"])
        await gateway.take_in("email", queued["email"])

        # The scheduler: the real timer on simulated time, publishing to TICKS.
        sim = SimulatedClock(START)
        timer = TickTimer(JetStreamTicks(nc), sim, account_period=ACCOUNT_PERIOD)
        directory = SchedulerSites(timer)
        rows = []
        for spec in specs:
            site = gateway.sites.get(spec.site_id)
            assert site is not None
            rows.append(
                SiteRow(
                    site.site_id, site.group_id, site.version, site.settings.model_dump(mode="json")
                )
            )
        assert directory.offer(rows) == len(specs)
        running = asyncio.create_task(timer.run())

        published = 0
        try:
            at = START
            while at < END:
                # Ticks at END itself belong to the next window, as in the forecast's [start, end).
                at = min(at + STEP, END - MICROSECOND)
                async with asyncio.timeout(120):
                    await sim.run_until(at)
                assert not running.done(), "the timer stopped"
                new_ticks, published = timer.published - published, timer.published
                await gateway.work(clock, await gateway.fetch_ticks(new_ticks))
                if at == END - MICROSECOND:
                    break
        finally:
            timer.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(running, 30)

        # None twice: at the receiving end, and the ledger agrees.
        copies = receiver.copies()
        twice = {m: n for m, n in copies.items() if n > 1}
        assert not twice, f"{len(twice)} messages reached the provider more than once"
        for channel in ("sms", "email"):
            ledger = await gateway.ledger(channel)
            sent_in_ledger = {m for m, (_, state) in ledger.items() if state == "sent"}
            delivered = {d.message_id for d in receiver.deliveries if d.channel == channel}
            assert sent_in_ledger == delivered, f"{channel}: ledger and provider disagree"

        # Every send inside its site's sessions (and quiet hours for SMS).
        problems: list[str] = []
        totals: Counter[tuple[str, str]] = Counter()
        on_change_days: Counter[str] = Counter()
        changes = {spec.zone: clock_changes(ZoneInfo(spec.zone), START, END) for spec in specs}
        for delivery in receiver.deliveries:
            sent = messages[delivery.message_id]
            spec = sent.site
            totals[(spec.site_id, sent.channel)] += 1
            immediate = sent.channel == "sms" and spec.immediate
            settings_of_channel = spec.sms if sent.channel == "sms" else spec.email
            assert settings_of_channel is not None
            sessions = None if immediate else settings_of_channel["sessions"]
            found = send_problems(
                delivery.at,
                zone=spec.zone,
                sessions=sessions,
                blackouts=spec.blackouts,
                closures=spec.closures,
            )
            if sent.channel == "sms":
                quiet = spec.sms.get("quiet_hours", {"start": "08:00", "end": "21:00"})
                if not in_quiet_hours(delivery.at, quiet, sent.zone):
                    found.append(f"outside the quiet hours in {sent.zone}")
            if found:
                local = delivery.at.astimezone(ZoneInfo(spec.zone))
                problems.append(
                    f"{spec.site_id} {sent.channel} at {local:%a %d %b %H:%M:%S %Z}: {found}"
                )
            tz = ZoneInfo(spec.zone)
            for change in changes[spec.zone]:
                if delivery.at.astimezone(tz).date() == change.instant.astimezone(tz).date():
                    on_change_days[spec.zone] += 1
        assert not problems, f"{len(problems)} sends broke their schedule: {problems[:10]}"

        # Staggered SMS keeps its pace in real time, through gaps and repeated hours alike.
        by_site: defaultdict[str, list[datetime]] = defaultdict(list)
        for delivery in receiver.deliveries:
            sent = messages[delivery.message_id]
            if sent.channel == "sms" and not sent.site.immediate:
                by_site[sent.site.site_id].append(delivery.at)
        crowded = {}
        for spec in specs:
            instants = sorted(by_site[spec.site_id])
            every = timedelta(minutes=spec.sms["every_minutes"])
            gaps = [b - a for a, b in itertools.pairwise(instants)]
            if gaps and min(gaps) < every:
                crowded[spec.site_id] = min(gaps)
        assert not crowded, f"staggered SMS closer than their interval: {crowded}"

        # Totals equal the forecast, site by site and channel by channel.
        wrong = {key: (totals[key], want) for key, want in expected.items() if totals[key] != want}
        assert not wrong, f"sent vs forecast differ for {len(wrong)}: {sorted(wrong.items())[:10]}"

        # The window did cross clock changes, and sites sent on those very days.
        changed = sorted(zone for zone, found in changes.items() if found)
        assert changed == sorted(CHANGING)
        assert all(on_change_days[zone] > 0 for zone in changed), on_change_days
        assert sum(totals.values()) == len(receiver.deliveries) > 0

        elapsed = timer_clock.monotonic() - began
        print(
            f"\n14 days, {len(specs)} sites: {timer.published} ticks, "
            f"{len(receiver.deliveries)} sends "
            f"({sum(n for (_, c), n in totals.items() if c == 'sms')} SMS), "
            f"{sum(len(c) for c in changes.values())} clock changes in {len(changed)} zones, "
            f"{elapsed:.1f} s"
        )
    finally:
        await gateway.stop()
        if storage != tmp_path:
            shutil.rmtree(storage, ignore_errors=True)
