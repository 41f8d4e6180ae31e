"""The audit trail: every event once, a chain that detects tampering, identical rebuilds."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from services.audit.adapters.trail import records
from services.audit.composition import AuditService
from services.audit.handlers.queries import verify
from shared.bus.topology import AUDIT
from shared.config import StaggerConfig
from shared.db.engine import create_engine, session_factory
from shared.runtime.nats_server import free_port
from shared.runtime.service import running
from tests.integration.dispatch.harness import make_site
from tests.support.waiting import wait_until


def audit_settings(nats_url: str, database_url: str, tmp_path: Path) -> StaggerConfig:
    return StaggerConfig(
        nats_url=nats_url,
        database_url=database_url,
        var_dir=tmp_path,
        audit_http_port=free_port(),
        heartbeat_seconds=0.5,
        instance_id="audit-test",
    )


async def stream_count(nc: Client) -> int:
    return (await nc.jetstream().stream_info(AUDIT)).state.messages


async def all_hashes(database_url: str) -> list[tuple[int, str, str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(records.c.position, records.c.event_id, records.c.hash).order_by(
                    records.c.position
                )
            )
            return [tuple(r) for r in rows]
    finally:
        await engine.dispose()


async def produce_history(nc: Client) -> None:
    await make_site(nc, group="audit-g", site="audit-a")
    await make_site(nc, group="audit-g", site="audit-b")
    await make_site(nc, group="other-g", site="other-a")
    # Accepted messages are in the OUTBOX work queue (not audited); settings events are.


async def test_every_event_once_verify_tamper_and_rebuild(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await produce_history(nc)
    await wait_until(lambda: _count_at_least(nc, 5), timeout=10, message="sourcing into AUDIT")
    settings = audit_settings(nats_url, database_url, tmp_path)
    async with running(AuditService(), settings) as ctx:
        expected = await stream_count(nc)
        await wait_until(lambda: _records(ctx, expected), timeout=20, message="trail caught up")
        first = await all_hashes(database_url)
        assert len(first) == expected
        assert len({event_id for _, event_id, _ in first}) == expected, "each event once"
        assert (await verify(ctx.db)).ok

    # Alter one row: verify names it.
    engine = create_engine(database_url)
    victim = first[len(first) // 2]
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(records)
            .where(records.c.position == victim[0])
            .values(actor="token:someone-else")
        )
    result = await verify(session_factory(engine))
    assert not result.ok
    assert result.problems[0]["position"] == victim[0]
    assert "altered" in result.problems[0]["problem"]
    await engine.dispose()


async def test_rebuild_from_empty_database_gives_identical_hashes(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    await produce_history(nc)
    await wait_until(lambda: _count_at_least(nc, 5), timeout=10, message="sourcing into AUDIT")
    first_db = f"sqlite+aiosqlite:///{tmp_path / 'first.db'}"
    second_db = f"sqlite+aiosqlite:///{tmp_path / 'second.db'}"
    for url in (first_db, second_db):
        async with running(AuditService(), audit_settings(nats_url, url, tmp_path)) as ctx:
            expected = await stream_count(nc)
            await wait_until(
                lambda c=ctx, e=expected: _records(c, e), timeout=20, message="caught up"
            )
    assert await all_hashes(first_db) == await all_hashes(second_db)


async def test_deleting_a_record_is_detected(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await produce_history(nc)
    await wait_until(lambda: _count_at_least(nc, 5), timeout=10, message="sourcing into AUDIT")
    async with running(AuditService(), audit_settings(nats_url, database_url, tmp_path)) as ctx:
        expected = await stream_count(nc)
        await wait_until(lambda: _records(ctx, expected), timeout=20, message="caught up")
    rows = await all_hashes(database_url)
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(sa.delete(records).where(records.c.position == rows[1][0]))
    result = await verify(session_factory(engine))
    await engine.dispose()
    assert not result.ok
    assert any("deleted" in p["problem"] for p in result.problems)


async def _records(ctx, n: int) -> bool:  # type: ignore[no-untyped-def]
    async with ctx.db() as session:
        return (
            await session.execute(sa.select(sa.func.count()).select_from(records))
        ).scalar() == n


async def _count_at_least(nc: Client, n: int) -> bool:
    return await stream_count(nc) >= n


async def test_cli_verify_names_the_altered_row(nc: Client, nats_url: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    await produce_history(nc)
    await wait_until(lambda: _count_at_least(nc, 5), timeout=10, message="sourcing into AUDIT")
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit-cli.db'}"
    async with running(AuditService(), audit_settings(nats_url, url, tmp_path)) as ctx:
        expected = await stream_count(nc)
        await wait_until(lambda: _records(ctx, expected), timeout=20, message="caught up")
    env = {**os.environ, "STAGGER_DATABASE_URL": url, "STAGGER_NATS_URL": nats_url}
    command = [sys.executable, "-m", "services.cli.main", "audit", "verify"]
    good = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stderr
    assert "intact" in good.stdout
    rows = await all_hashes(url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(records)
            .where(records.c.position == rows[2][0])
            .values(data='{"tampered": true}')
        )
    await engine.dispose()
    bad = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert f"position {rows[2][0]}" in bad.stderr
    exported = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "export", "--format", "csv"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert exported.returncode == 0
    assert len(exported.stdout.splitlines()) == len(rows) + 1
