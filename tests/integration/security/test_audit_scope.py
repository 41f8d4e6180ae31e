"""Audit scope: a group's callers see, verify and export their own group only, a site manager
no group-level record, and nobody a sealed secret or a token hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from nats.aio.client import Client

from services.audit.records import records
from services.audit.service import AuditService
from shared.bus import subjects
from shared.bus.topology import AUDIT, DISPATCH
from shared.db.engine import create_engine
from shared.events.envelope import make_event
from shared.events.schemas.dispatch import MessageQueued
from shared.eventstore import EventStore
from shared.runtime.service import running
from shared.suppression import record_opt_out
from shared.tokens import hash_secret, issue_token, parse_token
from tests.integration.audit.test_api import _caught_up
from tests.integration.audit.test_trail import audit_settings
from tests.integration.dispatch.harness import make_site
from tests.support.waiting import wait_until

SHARED_MESSAGE_ID = "m-shared-0001"


async def _queued(nc: Client, group: str, site: str, message_id: str) -> None:
    """A `dispatch.queued` event, as a gateway writes it."""
    data = MessageQueued(
        message_id=message_id, group_id=group, site_id=site, channel="sms", to="+447700900001"
    )
    event = make_event(
        data,
        source="sms_gateway",
        actor="service:sms_gateway",
        subject=message_id,
        group_id=group,
        site_id=site,
    )
    await EventStore(nc, DISPATCH).append(subjects.dispatch("sms", site), event)


async def _all_pages(client: httpx.AsyncClient, token: str, **params: Any) -> list[dict]:
    found: list[dict] = []
    cursor: int | None = 0
    while cursor is not None:
        page = await client.get(
            "/events",
            headers={"Authorization": f"Bearer {token}"},
            params={**params, "cursor": cursor, "limit": 1000},
        )
        assert page.status_code == 200, page.text
        found += page.json()["events"]
        cursor = page.json()["next_cursor"]
    return found


async def test_audit_scope_per_group_and_role_without_secrets(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    # Two groups; each site's provider secret is sealed in its settings events.
    await make_site(nc, group="scope-a", site="scope-a1")
    await make_site(nc, group="scope-a", site="scope-a2")
    await make_site(nc, group="scope-b", site="scope-b1")
    _, admin_a = await issue_token(nc, group_id="scope-a", role="group_admin")
    _, auditor_a = await issue_token(nc, group_id="scope-a", role="auditor")
    _, manager_a1 = await issue_token(
        nc, group_id="scope-a", role="site_manager", sites=["scope-a1"]
    )
    _, admin_b = await issue_token(nc, group_id="scope-b", role="group_admin")
    secret_hashes = [
        hash_secret(parse_token(t)[1]) for t in (admin_a, auditor_a, manager_a1, admin_b)
    ]  # type: ignore[index]
    # A group-level record that is not a settings or token event: a staff opt-out, no site.
    await record_opt_out(
        nc,
        group_id="scope-a",
        channel="sms",
        recipient="+447700900999",
        how="staff",
        actor="test",
    )
    # The same message id in both groups (ids are not namespaced by group).
    await _queued(nc, "scope-a", "scope-a1", SHARED_MESSAGE_ID)
    await _queued(nc, "scope-b", "scope-b1", SHARED_MESSAGE_ID)

    settings = audit_settings(nats_url, database_url, tmp_path)
    async with running(AuditService(), settings) as ctx:
        # Every event written above is in AUDIT and in the trail before anything is asked
        # (counted from the sources: a source's lag reads 0 before its first sync).
        total = await _written(nc)
        await wait_until(lambda: _audit_holds(nc, total), timeout=30, message="AUDIT sourced")
        await wait_until(lambda: _caught_up(ctx, total), timeout=30, message="trail")
        base = f"http://127.0.0.1:{settings.audit_http_port}/api/v1/audit"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            bodies: list[str] = []

            async def get(path: str, token: str, **params: Any) -> httpx.Response:
                answer = await client.get(
                    path, headers={"Authorization": f"Bearer {token}"}, params=params
                )
                bodies.append(answer.text)
                return answer

            # /verify of group A: A's chain only, nothing about B.
            group_a_records = await _count(database_url, "scope-a")
            verified = await get("/verify", admin_a)
            assert verified.status_code == 200, verified.text
            assert verified.json() == {
                "ok": True,
                "records": group_a_records,
                "chains": 1,
                "problems": [],
            }
            # Group B's trail is tampered with: A's verify does not notice or say so; B's does.
            await _tamper(database_url, "scope-b")
            verified = await get("/verify", auditor_a)
            assert verified.status_code == 200 and verified.json()["ok"] is True, verified.text
            assert "scope-b" not in verified.text
            broken = await get("/verify", admin_b)
            assert broken.status_code == 409
            assert {p["chain"] for p in broken.json()["problems"]} == {"scope-b"}

            # Events: a group role sees A's group-level records; the site manager none of them,
            # and only records of the site they manage.
            as_admin = await _all_pages(client, admin_a)
            bodies.append(json.dumps(as_admin))
            assert {e["groupid"] for e in as_admin} == {"scope-a"}
            group_level = [e for e in as_admin if e["siteid"] is None]
            assert {e["type"].rsplit(".v", 1)[0] for e in group_level} >= {
                "stagger.group.created",
                "stagger.access.token_issued",
                "stagger.optout.opted_out",
            }
            as_manager = await _all_pages(client, manager_a1)
            bodies.append(json.dumps(as_manager))
            assert as_manager, "the site manager sees their site's records"
            assert {e["siteid"] for e in as_manager} == {"scope-a1"}
            export = await get("/export", manager_a1)
            lines = [json.loads(line) for line in export.text.splitlines()]
            assert lines and {line["siteid"] for line in lines} == {"scope-a1"}
            await get("/export", admin_a, format="csv")

            # The timeline of a message id both groups used shows the caller's group only.
            timeline = await get(f"/messages/{SHARED_MESSAGE_ID}/timeline", auditor_a)
            assert timeline.status_code == 200, timeline.text
            assert {e["groupid"] for e in timeline.json()["events"]} == {"scope-a"}
            # (The outbox projection keys state by message id alone; it may hold B's row, which
            # A must not see.)
            state = timeline.json()["state"]
            assert state is None or state["group_id"] == "scope-a"
            other = await get(f"/messages/{SHARED_MESSAGE_ID}/timeline", admin_b)
            assert {e["groupid"] for e in other.json()["events"]} == {"scope-b"}
            # A site manager of another site of A sees nothing of it.
            _, manager_a2 = await issue_token(
                nc, group_id="scope-a", role="site_manager", sites=["scope-a2"]
            )
            hidden = await get(f"/messages/{SHARED_MESSAGE_ID}/timeline", manager_a2)
            assert hidden.status_code == 404

            # No response carries a sealed value or a token's hash (the trail still holds them).
            issued = [e for e in as_admin if e["type"] == "stagger.access.token_issued.v2"]
            assert issued and all(e["data"]["secret_hash"] == "********" for e in issued)
            for body in bodies:
                assert "enc:v1:" not in body
                for digest in secret_hashes:
                    assert digest not in body
            assert await _stored_containing(database_url, "enc:v1:") > 0
            assert await _stored_containing(database_url, secret_hashes[0]) == 1


async def _written(nc: Client) -> int:
    """Events in the streams AUDIT copies."""
    js = nc.jetstream()
    info = await js.stream_info(AUDIT)
    return sum([(await js.stream_info(s.name)).state.messages for s in info.config.sources or []])


async def _audit_holds(nc: Client, total: int) -> bool:
    return (await nc.jetstream().stream_info(AUDIT)).state.messages >= total


async def _count(database_url: str, group: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = sa.select(sa.func.count()).where(records.c.group_id == group)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def _tamper(database_url: str, group: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            first = (
                await conn.execute(
                    sa.select(sa.func.min(records.c.position)).where(records.c.group_id == group)
                )
            ).scalar_one()
            await conn.execute(
                sa.update(records).where(records.c.position == first).values(actor="forged")
            )
    finally:
        await engine.dispose()


async def _stored_containing(database_url: str, text: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = sa.select(sa.func.count()).where(records.c.data.contains(text))
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()
