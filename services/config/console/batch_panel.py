"""The outbox's "Latest batch" panel from the batch read model (exact counts)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.adapters.batches import BatchStore
from services.config.console.views import Batch


async def recorded_batch(
    db: async_sessionmaker[AsyncSession], site_id: str, channel: str | None
) -> tuple[Batch, str] | None:
    """The site's latest recorded batch (of `channel` when given) for the panel, and its
    channel; None when the read model has none."""
    for found in await BatchStore(db).of_site(site_id, 10):
        if channel in (None, found.channel):
            counts = found.progress.counts
            batch = Batch(
                submitted_at=found.submitted_at.isoformat(),
                total=found.progress.total,
                sent=counts["sent"],
                failed=counts["failed"],
                suppressed=counts["suppressed"],
                queued=counts["accepted"] + counts["queued"],
                other=counts["cancelled"] + counts["expired"],
            )
            return batch, found.channel
    return None
