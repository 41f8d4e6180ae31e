"""The scheduler as real processes: replicas, SIGKILL and restart."""

from __future__ import annotations

import collections
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client

from services.scheduler.domain.planning import account_slot
from shared.domain.accounts import sms_account_id
from shared.runtime.nats_server import free_port
from tests.integration.scheduler.support import (
    GROUP,
    SIM_PROVIDER,
    TickReader,
    offset_of,
    publish_site,
    scrape,
    settings,
    time_passes,
    window,
)
from tests.support.processes import ServiceProcess, service_env, start_service

ALWAYS = [window("all", "00:00", "00:00")]
EVERY_SECOND = 1 / 60


def second_floor(instant: datetime) -> datetime:
    return instant.replace(microsecond=0)


@pytest.mark.slow
async def test_two_replicas_store_each_instant_once(
    nc: Client, nats_url: str, ticks: TickReader, tmp_path: Path
) -> None:
    shared = {**SIM_PROVIDER, "account_id": "replicas"}
    immediate = settings(sms={"mode": "immediate", "provider": shared})
    await publish_site(
        nc,
        "s-rep-stag",
        settings(sms={"every_minutes": EVERY_SECOND, "sessions": ALWAYS}),
        created=True,
    )
    await publish_site(nc, "s-rep-imm1", immediate, created=True)
    await publish_site(nc, "s-rep-imm2", immediate, created=True)
    account = sms_account_id(immediate.sms.provider, GROUP)
    assert account is not None
    # Both replicas share one database (one SQLite file), as replicas share PostgreSQL.
    env = service_env(
        nats_url,
        tmp_path / "var",
        extra={
            "STAGGER_SCHEDULER_ACCOUNT_TICK_SECONDS": "0.25",
            # Robust on a loaded machine: a replica stalled for a few seconds still publishes.
            "STAGGER_SCHEDULER_GRACE_SECONDS": "5",
        },
    )
    replicas: list[ServiceProcess] = []
    try:
        replicas.append(start_service("scheduler", env))
        env2 = {**env, "STAGGER_SCHEDULER_HTTP_PORT": str(free_port())}
        replicas.append(start_service("scheduler", env2))
        begin = datetime.now(UTC) + timedelta(seconds=1)
        end = begin + timedelta(seconds=60)
        account_expected = account_grid(begin, end, timedelta(seconds=0.25))
        # The staggered grid: whole seconds plus the site's grid offset (under a second).
        o = offset_of("s-rep-stag", "sms", timedelta(seconds=1))
        grid = (second_floor(begin) + o + timedelta(seconds=k) for k in range(-1, 61))
        staggered_expected = [t for t in grid if begin <= t < end]
        assert len(staggered_expected) == 60
        assert len(account_expected) == 240
        while datetime.now(UTC) < end:  # sixty seconds of two replicas ticking
            await ticks.poll(0.5)

        def window(key: str, scope: str) -> collections.Counter[datetime]:
            return collections.Counter(
                t.tick.scheduled_at
                for t in ticks.of(key)
                if t.tick.scope == scope and begin <= t.tick.scheduled_at < end
            )

        await ticks.until(
            lambda _: (
                len(window(account, "account")) == 240 and len(window("s-rep-stag", "site")) == 60
            ),
            message="every instant of the window",
        )
        published = [scrape(r.url, "stagger_scheduler_ticks_published_total") for r in replicas]
        duplicates = sum(scrape(r.url, "stagger_scheduler_ticks_duplicate_total") for r in replicas)
    finally:
        for replica in replicas:
            replica.stop()
    await ticks.poll()

    account_instants = window(account, "account")
    assert sorted(account_instants) == account_expected
    assert set(account_instants.values()) == {1}, "an account tick was stored twice"
    staggered = window("s-rep-stag", "site")
    assert sorted(staggered) == staggered_expected
    assert set(staggered.values()) == {1}, "a staggered tick was stored twice"
    ids = [t.tick.tick_id for t in ticks.ticks]
    assert len(ids) == len(set(ids))
    assert all(p > 0 for p in published), f"each replica publishes: {published}"
    assert duplicates > 0  # both published the same ticks; JetStream kept one


def account_grid(begin: datetime, end: datetime, period: timedelta) -> list[datetime]:
    """Account tick instants in [begin, end)."""
    found = []
    slot = account_slot(period, begin)
    while slot.instant < end:
        found.append(slot.instant)
        slot = account_slot(period, slot.instant + timedelta(microseconds=1))
    return found


@pytest.mark.slow
async def test_sigkill_and_restart_skip_the_missed_ticks(
    nc: Client, nats_url: str, ticks: TickReader, tmp_path: Path
) -> None:
    await publish_site(
        nc,
        "s-kill",
        settings(sms={"every_minutes": EVERY_SECOND, "sessions": ALWAYS}),
        created=True,
    )
    # A fixed look-ahead of 1 s (no growing after a stall), so that the ticks stored before
    # the kill are known to have instants at most a second after it.
    env = service_env(
        nats_url, tmp_path / "var", extra={"STAGGER_SCHEDULER_PUBLISH_AHEAD_MAX_SECONDS": "1"}
    )
    scheduler = start_service("scheduler", env)
    try:
        await ticks.until(lambda got: len(got) >= 3, message="ticks before the kill")
        scheduler.kill()
        killed = datetime.now(UTC)
        await time_passes(killed + timedelta(seconds=5), "five missed intervals")
        restarted = datetime.now(UTC)
        scheduler = start_service("scheduler", env)
        await ticks.until(
            lambda got: sum(t.tick.scheduled_at > restarted for t in got) >= 5,
            message="ticks after the restart",
        )
    finally:
        scheduler.stop()
    await ticks.poll()
    instants = [t.tick.scheduled_at for t in ticks.of("s-kill")]
    assert len(instants) == len(set(instants))
    # Ticks are published 1 s ahead of their instant (PUBLISH_AHEAD_SECONDS), so the
    # ones stored before the kill have instants up to a second after it.
    ahead = timedelta(seconds=1)
    before = [t for t in instants if t <= killed + ahead]
    after = [t for t in instants if t > killed + ahead]
    assert len(before) >= 3
    # Nothing for the instants missed while it was down (it plans from its start minus 1 s).
    assert after[0] >= restarted - timedelta(seconds=1)
    assert (after[0] - before[-1]) >= timedelta(seconds=3)
    # Pacing resumes on the same grid: whole seconds plus the site's offset, never closer than
    # one second (a stall on a loaded machine may skip an instant, but nothing is ever caught
    # up in a burst).
    o = offset_of("s-kill", "sms", timedelta(seconds=1))
    assert all((t - o).microsecond == 0 for t in instants)
    assert all(b - a >= timedelta(seconds=1) for a, b in itertools.pairwise(instants))
