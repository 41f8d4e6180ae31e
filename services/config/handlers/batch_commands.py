"""Batch use cases: progress with a forecast finish, and cancel (a batch or one message).

Cancel publishes the gateways' existing `CancelRequested` command (CONTROL,
`control.<channel>.cancel.<site>`): the gateway ends every listed message still queued
`cancelled`, and leaves alone what it has already handed to a provider (that one ends as the
provider answers), so each message still gets exactly one terminal event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from nats.aio.client import Client

from services.config.adapters.batch_tables import batch_messages, batches
from services.config.adapters.batches import WAITING, Batch, BatchStore
from services.config.domain.aggregates import SiteState
from shared.bus import subjects
from shared.bus.topology import CONTROL
from shared.domain.batches import cancel_answer
from shared.domain.planning import Channel, site_forecast
from shared.events.envelope import make_event
from shared.events.schemas.control import CancelRequested
from shared.eventstore import EventStore

CANCEL_CHUNK = 1000
"""Message ids per cancel command: 1,000 ids of 36 characters stay far below NATS' 1 MiB."""


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel request did."""

    requested: int
    message: str
    event_ids: list[str]


class BatchCommands:
    """Answers about batches and cancels them."""

    def __init__(self, nc: Client, store: BatchStore) -> None:
        self.nc = nc
        self.store = store

    async def forecast_finish(self, site: SiteState, batch: Batch) -> dict[str, Any] | None:
        """When the batch's last waiting message is expected to go (behind the waiting messages
        of the site's earlier batches), or None when it has finished."""
        remaining = batch.progress.remaining
        if remaining == 0:
            return None
        ahead = await self._waiting_before(batch)
        channel: Channel = "email" if batch.channel == "email" else "sms"
        forecast = site_forecast(site.settings, channel, remaining, ahead, 7, site_id=site.site_id)
        return {
            "last_send": forecast["last_send"],
            "ahead": ahead,
            "warning": forecast["warning"],
        }

    async def _waiting_before(self, batch: Batch) -> int:
        joined = batch_messages.join(
            batches,
            (batches.c.batch_id == batch_messages.c.batch_id)
            & (batches.c.site_id == batch_messages.c.site_id),
        )
        async with self.store.db() as session:
            count = await session.execute(
                sa.select(sa.func.count())
                .select_from(joined)
                .where(
                    batches.c.site_id == batch.site_id,
                    batches.c.channel == batch.channel,
                    batches.c.submitted_at < batch.submitted_at,
                    batch_messages.c.state.in_(WAITING),
                )
            )
            return int(count.scalar() or 0)

    async def cancel_batch(self, site: SiteState, batch: Batch, *, actor: str) -> CancelOutcome:
        """Cancel every message of the batch not yet handed to a provider."""
        waiting = (
            [] if batch.progress.done else await self.store.waiting(batch.batch_id, batch.site_id)
        )
        answer = cancel_answer(batch.progress, len(waiting))
        ids = await self._publish(site, batch.channel, waiting, actor, batch.batch_id)
        return CancelOutcome(len(waiting), answer, ids)

    async def cancel_message(
        self, site: SiteState, channel: str, message_id: str, *, actor: str
    ) -> list[str]:
        """Cancel one message (a no-op at the gateway when it has already been sent)."""
        return await self._publish(site, channel, [message_id], actor, None)

    async def _publish(
        self,
        site: SiteState,
        channel: str,
        message_ids: Sequence[str],
        actor: str,
        batch_id: str | None,
    ) -> list[str]:
        store = EventStore(self.nc, CONTROL)
        subject = subjects.gateway_control(channel, "cancel", site.site_id)  # type: ignore[arg-type]
        sent: list[str] = []
        for start in range(0, len(message_ids), CANCEL_CHUNK):
            data = CancelRequested(
                group_id=site.group_id,
                site_id=site.site_id,
                channel=channel,  # type: ignore[arg-type]
                message_ids=list(message_ids[start : start + CANCEL_CHUNK]),
                reason="cancelled by staff",
                batch_id=batch_id,
            )
            event = make_event(
                data,
                source="config",
                actor=actor,
                subject=site.site_id,
                group_id=site.group_id,
                site_id=site.site_id,
            )
            await store.append(subject, event)
            sent.append(event.id)
        return sent
