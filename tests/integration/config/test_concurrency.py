"""Optimistic concurrency: no update is ever lost or silently overwritten."""

from __future__ import annotations

import asyncio

from shared.bus.topology import SETTINGS
from shared.events.schemas.settings import SiteSettingsChanged
from shared.eventstore import EventStore
from tests.integration.config.conftest import ConfigHarness


async def test_fifty_concurrent_writers_each_land_or_get_409(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    site_id = group["site_id"]
    async with config.client(group["admin"]) as client:
        start = await client.get(f"/api/v1/sites/{site_id}")
        etag = start.headers["ETag"]

        async def writer(i: int) -> tuple[int, int | None]:
            response = await client.patch(
                f"/api/v1/sites/{site_id}/settings",
                json={"set": {"sms": {"low_credit_threshold": 1000 + i}}, "note": f"writer {i}"},
                headers={"If-Match": etag},
            )
            version = response.json().get("version") if response.status_code == 200 else None
            return response.status_code, version

        results = await asyncio.gather(*(writer(i) for i in range(50)))
    statuses = sorted({status for status, _ in results})
    assert set(statuses) <= {200, 409}
    winners = [i for i, (status, _) in enumerate(results) if status == 200]
    assert len(winners) == 1, "all fifty read the same version: exactly one may land"

    history = await EventStore(config.nc, SETTINGS).load(f"settings.{group['group_id']}.{site_id}")
    changes = [e for e in history.events if isinstance(e.data, SiteSettingsChanged)]
    assert [e.data.note for e in changes] == [f"writer {winners[0]}"]


async def test_writers_that_retry_on_409_all_land_without_gaps(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    site_id = group["site_id"]
    async with config.client(group["admin"]) as client:

        async def writer(i: int) -> int:
            conflicts = 0
            while True:
                current = await client.get(f"/api/v1/sites/{site_id}")
                response = await client.patch(
                    f"/api/v1/sites/{site_id}/settings",
                    json={"set": {"sms": {"low_credit_threshold": 2000 + i}}, "note": f"w{i}"},
                    headers={"If-Match": current.headers["ETag"]},
                )
                if response.status_code == 200:
                    return conflicts
                assert response.status_code == 409, response.text
                assert response.json()["current_version"] >= 0
                conflicts += 1

        conflicts = await asyncio.gather(*(writer(i) for i in range(50)))
    assert sum(conflicts) > 0, "fifty concurrent writers should have collided at least once"

    history = await EventStore(config.nc, SETTINGS).load(f"settings.{group['group_id']}.{site_id}")
    notes = [e.data.note for e in history.events if isinstance(e.data, SiteSettingsChanged)]
    assert sorted(notes) == sorted(f"w{i}" for i in range(50)), "every update landed exactly once"
    # Each change was made against the state left by the one before it.
    thresholds = [e.data.settings.sms.low_credit_threshold for e in history.events[1:]]
    olds = [
        next(c.old for c in e.data.changes if c.path == "sms.low_credit_threshold")
        for e in history.events[1:]
    ]
    assert olds[1:] == thresholds[:-1]


async def test_write_without_version_is_refused(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    async with config.client(group["admin"]) as client:
        response = await client.patch(
            f"/api/v1/sites/{group['site_id']}/settings",
            json={"set": {"sms": {"every_minutes": 4}}},
        )
    assert response.status_code == 428
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "If-Match"
