"""The batch-late alert: a batch whose waiting messages will not all go within the site's
warning (`sms.warn_after_days`), by the same forecast the batch page shows.

No event reveals it (the clock and the site's sessions do), so it is checked every minute
(`alert_checks.AlertClock`): each batch with waiting messages raises or clears its condition
through the same state machine and outbox as the other alerts; a batch with nothing left
waiting clears.
"""

from __future__ import annotations

from services.config.adapters.alerts import AlertStore
from services.config.adapters.batches import BatchStore
from services.config.adapters.settings_store import SettingsStore
from services.config.domain.alerts import Clear, Condition, Raise, Signal
from services.config.handlers.batch_commands import BatchCommands


class BatchLateWatcher:
    """Raises and clears batch-late alerts (run by `alert_checks.AlertClock`)."""

    def __init__(self, alerts: AlertStore, batches: BatchCommands, settings: SettingsStore) -> None:
        self.alerts = alerts
        self.batches = batches
        self.settings = settings

    async def check(self) -> bool:
        """One pass; True when an alert was raised or cleared."""
        signals: list[Signal] = []
        waiting = await self.alerts.waiting_batches()
        for batch_id in waiting:
            signal = await self._signal(batch_id)
            if signal is not None:
                signals.append(signal)
        still = set(waiting)
        for group_id, batch_id in await self.alerts.raised_keys("batch_late"):
            if batch_id not in still:
                signals.append(
                    Clear(
                        Condition(group_id, "batch_late", batch_id),
                        f"Batch {batch_id} has no messages waiting any more.",
                    )
                )
        return await self.alerts.decide(signals)

    async def _signal(self, batch_id: str) -> Signal | None:
        store: BatchStore = self.batches.store
        batch = await store.get(batch_id)
        if batch is None:
            return None
        site = await self.settings.site(batch.site_id)
        if site is None:
            return None
        condition = Condition(batch.group_id, "batch_late", batch_id)
        finish = await self.batches.forecast_finish(site, batch)
        if finish is None or not finish.get("warning"):
            return Clear(
                condition,
                f"Batch {batch_id} at {site.name} now fits its sessions within the site's warning.",
                batch.site_id,
            )
        remaining = batch.progress.remaining
        return Raise(
            condition,
            f"Batch {batch_id} at {site.name} ({remaining:,} {batch.channel} messages waiting) "
            f"will not fit its sessions within the site's warning: {finish['warning']}",
            batch.site_id,
        )
