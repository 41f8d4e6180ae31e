"""Retention of personal data per group: delete old body and reply keys, never an event.

A group's policy is the latest `stagger.privacy.retention_set` on `optouts.<group>.retention`
(defaults: 90 days for bodies and replies). Applying it deletes the group's `body` keys of
days older than `bodies_days`, and `reply` keys older than `replies_days`: those fields then
read "erased" wherever they were written, while addresses, times and outcomes stay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from nats.aio.client import Client

from shared.bus import subjects
from shared.bus.topology import OPTOUTS
from shared.events.envelope import make_event
from shared.events.schemas.privacy import RetentionSet
from shared.eventstore import EventStore
from shared.privacy.codec import BODY, REPLY, PersonalData, day_of

DEFAULT = RetentionSet(group_id="_default")
log = logging.getLogger(__name__)


async def set_retention(nc: Client, policy: RetentionSet, actor: str) -> None:
    """Record a group's retention (the latest event is the policy)."""
    event = make_event(
        policy, source="config", actor=actor, subject=policy.group_id, group_id=policy.group_id
    )
    await EventStore(nc, OPTOUTS).append(subjects.retention(policy.group_id), event)


async def policy_of(nc: Client, group_id: str) -> RetentionSet:
    """A group's retention, or the defaults for a group that never set one."""
    last = await EventStore(nc, OPTOUTS).last(subjects.retention(group_id))
    if last is not None and isinstance(last.data, RetentionSet):
        return last.data
    return DEFAULT.model_copy(update={"group_id": group_id})


async def apply_retention(nc: Client, personal: PersonalData, now: datetime) -> dict[str, int]:
    """Delete every group's body and reply keys past its retention; keys deleted per kind."""
    deleted = {BODY: 0, REPLY: 0}
    policies: dict[str, RetentionSet] = {}
    for kind in (BODY, REPLY):
        by_group: dict[str, list[str]] = {}
        for name in await personal.keys.names(f"*.*.{kind}.*"):
            by_group.setdefault(name.split(".", 1)[0], []).append(name)
        for group_id, names in by_group.items():
            if group_id not in policies:
                policies[group_id] = await policy_of(nc, group_id)
            policy = policies[group_id]
            days = policy.bodies_days if kind == BODY else policy.replies_days
            # A key of day D holds what was written during D: it goes once all of D is older
            # than the retention.
            cutoff = day_of(now - timedelta(days=days))
            old = [n for n in names if n.rsplit(".", 1)[1] < cutoff]
            deleted[kind] += await personal.keys.delete(old)
    return deleted


class ForgetsMetadata(Protocol):
    """A gateway's queue, as the delivery-metadata retention uses it."""

    async def forget_metadata(self, group_id: str, finished_before: datetime) -> int: ...


async def apply_metadata_retention(
    policies: Mapping[str, RetentionSet], queue: ForgetsMetadata, now: datetime
) -> int:
    """Blank the delivery metadata of finished messages past each group's `metadata_days`."""
    done = 0
    for group_id, policy in list(policies.items()):
        if policy.metadata_days is not None:
            before = now - timedelta(days=policy.metadata_days)
            done += await queue.forget_metadata(group_id, before)
    return done


async def metadata_retention_forever(
    policies: Mapping[str, RetentionSet], queue: ForgetsMetadata, every: float = 3600.0
) -> None:
    """`apply_metadata_retention` hourly for the life of a gateway (a failure is retried at
    the next round, it never stops the gateway)."""
    while True:
        try:
            await apply_metadata_retention(policies, queue, datetime.now(UTC))
        except Exception:
            log.exception("delivery-metadata retention failed; retrying later")
        await asyncio.sleep(every)
