"""The audit API over a real delivery: timelines, outbox, filters, export, verify, access."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from nats.aio.client import Client

from services.audit.composition import AuditService
from shared.bus.topology import AUDIT
from shared.runtime.service import running
from shared.tokens import issue_token
from tests.integration.audit.test_trail import audit_settings
from tests.integration.dispatch.harness import (
    FakeAdapter,
    FakeProvider,
    engine_running,
    make_site,
    send_tick,
    submit,
)
from tests.support.waiting import wait_until


async def test_timeline_outbox_filters_export_and_access(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="tl-g", site="tl-a")
    await make_site(nc, group="tl-other", site="tl-x")
    provider = FakeProvider(suppressed={"+447700900002"})
    db = f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"
    async with engine_running(nats_url, db, tmp_path, FakeAdapter(provider)) as gw:
        ids = await submit(nc, "tl-a", 3)
        await wait_until(lambda: _depth(gw, 3), timeout=20, message="queued")
        await send_tick(nc, "tl-a", budget=3)
        await wait_until(lambda: len(provider.sent) == 2, timeout=20, message="sent")
    _, admin = await issue_token(nc, group_id="tl-g", role="group_admin")
    _, auditor = await issue_token(nc, group_id="tl-g", role="auditor")
    _, outsider = await issue_token(nc, group_id="tl-other", role="auditor")
    settings = audit_settings(nats_url, f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}", tmp_path)
    async with running(AuditService(), settings) as ctx:
        await wait_until(lambda: _sourced(nc), timeout=20, message="AUDIT has every source")
        total = (await nc.jetstream().stream_info(AUDIT)).state.messages
        await wait_until(lambda: _caught_up(ctx, total), timeout=20, message="trail")
        base = f"http://127.0.0.1:{settings.audit_http_port}/api/v1/audit"
        async with httpx.AsyncClient(base_url=base, timeout=20) as client:
            auth = {"Authorization": f"Bearer {auditor}"}
            timeline = (await client.get(f"/messages/{ids[0]}/timeline", headers=auth)).json()
            assert [e["type"] for e in timeline["events"]] == [
                "stagger.dispatch.queued.v2",
                "stagger.dispatch.sent.v1",
            ]
            assert timeline["why_sent_then"]["reason"] == "test tick"
            assert timeline["settings_in_force"]["settings"]["sms"]["provider"]["kind"] == (
                "simulator"
            )
            outbox = (await client.get("/sites/tl-a/outbox", headers=auth)).json()
            assert outbox["counts"] == {"sent": 2, "suppressed": 1}
            suppressed = (
                await client.get(
                    "/events",
                    headers=auth,
                    params={"type": "stagger.dispatch.suppressed", "site_id": "tl-a"},
                )
            ).json()
            assert [e["message_id"] for e in suppressed["events"]] == [ids[2]]
            page = (await client.get("/events", headers=auth, params={"limit": 2})).json()
            assert len(page["events"]) == 2 and page["next_cursor"] is not None
            export = await client.get("/export", headers=auth, params={"site_id": "tl-a"})
            lines = [json.loads(line) for line in export.text.splitlines()]
            assert {line["siteid"] for line in lines} == {"tl-a"}
            csv_export = await client.get(
                "/export", headers=auth, params={"format": "csv", "site_id": "tl-a"}
            )
            assert csv_export.text.splitlines()[0].startswith("position,id,type")
            assert len(csv_export.text.splitlines()) == len(lines) + 1
            verified = await client.get("/verify", headers={"Authorization": f"Bearer {admin}"})
            assert verified.status_code == 200 and verified.json()["ok"] is True
            # Another group's auditor sees none of it.
            other = {"Authorization": f"Bearer {outsider}"}
            assert (
                await client.get(f"/messages/{ids[0]}/timeline", headers=other)
            ).status_code == 404
            assert (await client.get("/sites/tl-a/outbox", headers=other)).status_code == 404
            mine = (await client.get("/events", headers=other)).json()["events"]
            assert all(e["groupid"] == "tl-other" for e in mine)
            assert (await client.get("/events")).status_code == 401


async def _depth(gw, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await gw.engine.queue.depth() == n


async def _sourced(nc: Client) -> bool:
    """True once JetStream has copied everything from AUDIT's sources into it."""
    info = await nc.jetstream().stream_info(AUDIT)
    return all(source.lag == 0 for source in info.sources or [])


async def _caught_up(ctx, n: int) -> bool:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from services.audit.adapters.trail import records

    async with ctx.db() as session:
        return (
            await session.execute(sa.select(sa.func.count()).select_from(records))
        ).scalar() >= n
