"""What the console asks of other parts: the audit service (outbox, credits), the gateways
(reset failed messages, over CONTROL) and the opt-out lists. A base of `Console`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from nats.aio.client import Client

from services.config.adapters.credit_reports import account_credits
from services.config.console import views
from services.config.console.audit_client import AuditClient, AuditUnavailable
from services.config.console.batch_panel import recorded_batch
from services.config.domain.aggregates import SiteState
from services.config.handlers import ConfigHandlers, NotFound
from shared.bus import subjects
from shared.bus.topology import CONTROL
from shared.config import StaggerConfig
from shared.domain.accounts import sms_account_id
from shared.domain.consent import optout_scope
from shared.domain.phone import InvalidPhoneNumber, normalise_phone
from shared.domain.planning import site_forecast
from shared.domain.site_settings import valid_email
from shared.events.envelope import make_event
from shared.events.schemas.control import ResetFailedRequested
from shared.eventstore import EventStore
from shared.privacy.cipher import is_personal
from shared.privacy.shown import is_tag
from shared.suppression import SuppressionList, record_opt_in, record_opt_out
from shared.tokens import Principal

if TYPE_CHECKING:
    from services.config.console.common import User

log = logging.getLogger(__name__)


class ConsoleOperations:
    """The console's calls beyond its own pages; `Console` provides the attributes."""

    settings: StaggerConfig
    nc: Client
    handlers: ConfigHandlers
    audit: AuditClient
    suppression: SuppressionList
    api: httpx.AsyncClient | None

    if TYPE_CHECKING:

        async def visible_sites(self, who: Principal) -> list[dict[str, Any]]: ...

    # --- shared reads ------------------------------------------------------------------

    async def audit_call(self, call: Awaitable[Any]) -> tuple[Any, str | None]:
        """(result, None), or (None, why) when the audit service is unavailable."""
        try:
            return await call, None
        except AuditUnavailable as exc:
            log.warning("audit service unavailable", extra={"error": str(exc)})
            return None, str(exc)

    # --- commands ----------------------------------------------------------------------

    async def reset_failed(self, user: User, site: SiteState, channel: str) -> str:
        """Ask the channel's gateway to retry the site's failed messages (CONTROL)."""
        data = ResetFailedRequested(
            group_id=site.group_id,
            site_id=site.site_id,
            channel=channel,  # type: ignore[arg-type]
        )
        event = make_event(
            data,
            source="config",
            actor=user.who.actor,
            subject=site.site_id,
            group_id=site.group_id,
            site_id=site.site_id,
        )
        await EventStore(self.nc, CONTROL).append(
            subjects.gateway_control(channel, "reset_failed", site.site_id),  # type: ignore[arg-type]
            event,
        )
        return event.id

    async def api_post(self, user: User, path: str) -> httpx.Response:
        """POST to the JSON API in-process with the user's token."""
        assert self.api is not None, "console not mounted"
        return await self.api.post(path, headers={"Authorization": f"Bearer {user.token}"})

    async def add_opt_out(
        self,
        user: User,
        channel: str,
        raw: str,
        site: SiteState | None,
        category: str | None = None,
    ) -> tuple[str | None, str | None]:
        """(normalised recipient, None) after recording a staff opt-out (of `category` where
        the region allows one category, else of every one), or (None, error)."""
        settings = (
            site.settings if site else (await self.handlers.group(user.who.group_id)).defaults
        )
        if category is not None and category not in settings.consent.categories:
            return None, f"{category!r} is not one of this group's consent categories"
        scope = optout_scope(settings.profile.region, category)
        if channel == "sms":
            region = site.settings.profile.region if site else None
            try:
                recipient = normalise_phone(raw, region)
            except InvalidPhoneNumber as exc:
                return None, str(exc)
        else:
            recipient = raw.strip().lower()
            if not valid_email(recipient):
                return None, "not a valid email address"
        personal = self.handlers.personal
        # Recorded sealed, filed by the salted hash (docs/privacy.md).
        await record_opt_out(
            self.nc,
            group_id=user.who.group_id,
            channel=channel,  # type: ignore[arg-type]
            recipient=recipient,
            how="staff",
            actor=user.who.actor,
            site_id=site.site_id if site else None,
            category=scope,
            personal=personal,
        )
        tag = personal.tag(user.who.group_id, recipient)
        await self._until(
            lambda: self.suppression.is_suppressed(user.who.group_id, channel, tag, scope)
        )
        return recipient, None

    async def remove_opt_out(self, user: User, channel: str, recipient: str) -> None:
        """Record that the patient asked to be contacted again (group admins only).
        `recipient` is what the list shows: the sealed value, a salted hash, or a clear
        address of an older opt-out (sealed now)."""
        personal = self.handlers.personal
        await record_opt_in(
            self.nc,
            group_id=user.who.group_id,
            channel=channel,  # type: ignore[arg-type]
            recipient=recipient,
            how="staff",
            actor=user.who.actor,
            personal=personal,
        )
        tag = recipient if is_tag(recipient) else personal.tag(user.who.group_id, recipient)
        await self._until(
            lambda: not self.suppression.is_suppressed(user.who.group_id, channel, tag)
        )

    @staticmethod
    async def _until(condition: Callable[[], bool], patience: float = 3.0) -> None:
        """Wait (bounded) until the followed list reflects our own write."""
        deadline = asyncio.get_running_loop().time() + patience
        # The suppression list has no change notification: poll it, bounded.
        while not condition() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    # --- outbox, credits ---------------------------------------------------------------

    async def opened(self, group_id: str, rows: list[dict[str, Any]], *fields: str) -> None:
        """Open, in place, the sealed personal fields the staff may read (docs/privacy.md):
        each erased one reads "erased"."""
        personal = self.handlers.personal
        for row in rows:
            for name in fields:
                value = row.get(name)
                if isinstance(value, str) and is_personal(value):
                    row[name] = await personal.open(group_id, value)

    async def outbox_view(
        self, user: User, site: SiteState, channel: str | None, state: str | None
    ) -> dict[str, Any]:
        """Counts, the message list and the latest batch's progress, from the audit service."""
        token = user.token
        listing = await self.audit.get(
            token,
            f"/sites/{site.site_id}/outbox",
            {"channel": channel, "state": state, "limit": 200},
        )
        everything = await self.audit.get(
            token, f"/sites/{site.site_id}/outbox", {"channel": channel, "limit": 1000}
        )
        states = {m["message_id"]: m.get("state") for m in everything.get("messages", [])}
        latest = max(
            (views.parse_time(m.get("queued_at")) for m in everything.get("messages", [])),
            default=None,
            key=lambda t: t or datetime.min.replace(tzinfo=UTC),
        )
        batch = None
        finish = None
        batch_channel = channel or "sms"
        # Exact, from the batch read model; the guess over recent messages only for messages
        # that came without a batch id (published to the bus directly before batches existed).
        recorded = await recorded_batch(self.handlers.db, site.site_id, channel)
        if recorded is not None:
            batch, batch_channel = recorded
        elif latest is not None:
            queued_events = await self.audit.events(
                token,
                pages=5,
                type="stagger.dispatch.queued",
                site_id=site.site_id,
                since=(latest - timedelta(hours=1)).isoformat(),
            )
            if channel:
                queued_events = [
                    e for e in queued_events if (e.get("data") or {}).get("channel") == channel
                ]
            batch = views.latest_batch(queued_events, states)
            if queued_events:
                batch_channel = (queued_events[-1].get("data") or {}).get("channel") or "sms"
        if batch is not None and batch.queued:
            ahead = max(int(listing["counts"].get("queued", 0)) - batch.queued, 0)
            finish = site_forecast(
                site.settings,
                "email" if batch_channel == "email" else "sms",
                batch.queued,
                ahead,
                30,
                site_id=site.site_id,
            )
        messages = listing.get("messages", [])
        await self.opened(site.group_id, messages, "recipient")
        return {
            "counts": listing.get("counts", {}),
            "messages": messages,
            "batch": batch,
            "batch_channel": batch_channel,
            "finish": finish,
        }

    async def credits_view(self, user: User) -> tuple[list[dict[str, Any]], str | None]:
        """Each provider account of the visible sites with its balance history."""
        accounts: dict[str, dict[str, Any]] = {}
        for row in await self.visible_sites(user.who):
            try:
                site = await self.handlers.site(row["site_id"])
            except NotFound:
                continue
            provider = site.settings.sms.provider
            account = sms_account_id(provider, site.group_id)
            if account is None:
                continue
            entry = accounts.setdefault(
                account,
                {"account": account, "provider": provider.kind, "sites": [], "threshold": 0},
            )
            entry["sites"].append({"site_id": site.site_id, "name": site.name})
            entry["threshold"] = max(entry["threshold"], site.settings.sms.low_credit_threshold)
        since = datetime.now(UTC) - timedelta(days=30)
        for entry in accounts.values():
            # From the account's own subject in PROVIDERS: its latest report is always there,
            # however many events other accounts have (see credit_reports).
            credits = await account_credits(self.nc, entry["account"], since)
            samples = [(r.at, r.balance) for r in credits.reports]
            latest = credits.latest
            entry["samples"] = samples
            entry["any_events"] = credits.any_events
            entry["latest"] = latest.balance if latest else None
            entry["latest_at"] = latest.at if latest else None
            entry["low"] = latest is not None and latest.balance < entry["threshold"]
            entry["chart"] = views.credit_chart(samples, float(entry["threshold"]))
            entry["notes"] = credits.notes
            entry["unit"] = credits.unit
        down = None
        return sorted(accounts.values(), key=lambda a: a["sites"][0]["name"]), down
