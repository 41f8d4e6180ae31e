"""The SMS side of the delivery engine (`shared.dispatch.adapter.ChannelAdapter`).

The engine claims messages on ticks, paces them and records every outcome; this adapter
decides what a provider's answer means:

- `check`, before any provider call: the group's suppression list (an opted-out number ends
  `suppressed`), E.164 and body length (the provider's maximum), a usable provider and sender,
  and the recipient's quiet hours in their local time (`defer` to the next allowed instant).
- `send`: our message id is the provider's reference. A message that was attempted before is
  first looked up at the provider and never POSTed again if the provider has it. An answer
  that never came (timeout, dropped connection) is *ambiguous*: it is looked up at once, and
  otherwise retried later through the same lookup-first path — never re-sent blindly.
- `reconcile`, after a crash: the lookup decides whether the interrupted send happened.
- `account_resumed`: while credits are out, polls the balance so sending resumes by itself.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa

from services.sms_gateway.providers import NotConfigured
from services.sms_gateway.providers.base import (
    Found,
    Outbound,
    Provider,
    ProviderError,
    SendReply,
)
from services.sms_gateway.providers.catalogue import CONTENT_SEARCHED
from shared.dispatch.adapter import SEND, AccountLimitsSpec, Reconciled, SendResult, Verdict
from shared.dispatch.queue import Claimed
from shared.domain.accounts import sms_account_id
from shared.domain.phone import is_e164, timezone_for_number
from shared.domain.quiet_hours import QuietHours
from shared.domain.site_settings import parse_hhmm
from shared.events.schemas.optouts import RecipientOptedOut
from shared.events.schemas.ticks import TickIssued
from shared.sites import Site
from shared.suppression import record_opt_out

if TYPE_CHECKING:
    from services.sms_gateway.service import SmsGatewayService

log = logging.getLogger(__name__)

MISCONFIGURED_RETRY = timedelta(minutes=5)


def quiet_hours(site: Site) -> QuietHours:
    """The site's quiet-hours guard (recipient-local sending hours)."""
    setting = site.settings.sms.quiet_hours
    return _guard(setting.start, setting.end)


@functools.lru_cache(maxsize=256)
def _guard(start: str, end: str) -> QuietHours:
    # Checked twice per message (at the claim and just before the send): parsed once.
    return QuietHours(parse_hhmm(start), parse_hhmm(end))


class SmsAdapter:
    """SMS providers behind the delivery engine."""

    channel: Literal["sms", "email"] = "sms"

    def __init__(self, gateway: SmsGatewayService) -> None:
        self._gw = gateway

    def account_for(self, site: Site) -> str | None:
        """The provider account (sites of a group with the same credentials share it)."""
        return sms_account_id(site.settings.sms.provider, site.group_id)

    def limits_for(self, site: Site) -> AccountLimitsSpec:
        """The account's hard rate: one send every 1/rate seconds, no burst."""
        rate = site.settings.sms.provider.rate_per_second
        return AccountLimitsSpec(interval=timedelta(seconds=1 / rate), burst=1)

    def sender(self, site: Site, provider: Provider) -> str | None:
        """Who the message is from: the site's sender ID, else the gateway's default where
        the provider allows one."""
        if site.settings.sms.sender_id:
            return site.settings.sms.sender_id
        return None if provider.needs_sender else self._gw.settings.default_sender_id

    def outbound(self, claimed: Claimed, site: Site, provider: Provider) -> Outbound:
        """The provider-neutral message."""
        return Outbound(
            reference=claimed.message_id,
            to=claimed.recipient,
            sender=self.sender(site, provider) or "",
            body=claimed.message.body,
            submitted_at=claimed.message.submitted_at,
        )

    # --- before the provider ---------------------------------------------------------------

    async def check(self, claimed: Claimed, site: Site, now: datetime) -> Verdict:
        """Opt-outs, validity, configuration and the quiet-hours guard."""
        if self._gw.suppression.is_suppressed(claimed.group_id, "sms", claimed.recipient):
            return Verdict("suppress", "the recipient opted out of this group's SMS")
        if not is_e164(claimed.recipient):
            return Verdict("fail", f"{claimed.recipient!r} is not an E.164 phone number")
        body = claimed.message.body
        if not body.strip():
            return Verdict("fail", "an SMS needs a body")
        try:
            provider = self._gw.providers.for_site(site)
        except NotConfigured as exc:
            return Verdict("defer", f"{exc}; waiting for the settings", now + MISCONFIGURED_RETRY)
        if len(body) > provider.max_body_chars:
            return Verdict(
                "fail",
                f"the body has {len(body)} characters; {provider.kind} accepts at most "
                f"{provider.max_body_chars}",
            )
        if self.sender(site, provider) is None:
            return Verdict(
                "defer",
                f"no sender ID is set: {provider.kind} needs the site's number as sender",
                now + MISCONFIGURED_RETRY,
            )
        return self._quiet_hours(claimed, site, now) or SEND

    def _quiet_hours(self, claimed: Claimed, site: Site, now: datetime) -> Verdict | None:
        guard = quiet_hours(site)
        zone = timezone_for_number(claimed.recipient, site.settings.profile.timezone)
        if guard.is_allowed(now, zone):
            return None
        setting = site.settings.sms.quiet_hours
        return Verdict(
            "defer",
            f"outside the recipient's quiet hours ({setting.start}-{setting.end} {zone})",
            guard.next_allowed(now, zone),
        )

    # --- the provider ----------------------------------------------------------------------

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        """Hand one message to the provider (looking it up first if attempted before)."""
        try:
            provider = self._gw.providers.for_site(site)
        except NotConfigured as exc:
            return SendResult("retry", error=str(exc))
        account = self.account_for(site) or ""
        message = self.outbound(claimed, site, provider)
        if claimed.attempts > 0:
            found = await self._lookup(provider, message, claimed.site_id)
            if found.sent:
                return self._already_there(found)
        late = self._quiet_hours(claimed, site, datetime.now(UTC))
        if late is not None and late.retry_at is not None:
            # The guard closed between the claim and now: not a single message past it.
            wait = (late.retry_at - datetime.now(UTC)).total_seconds()
            return SendResult("retry", error=late.reason, retry_after=max(wait, 1.0))
        began_at = datetime.now(UTC)
        reply = await provider.send(message)
        # The provider took the balance it answers with between these two instants (the
        # child's own start of the POST is the closer one). Wall clock, not the loop's: the
        # credit state compares them across replicas.
        began_at = reply.began_at or began_at
        taken = (began_at.timestamp(), time.time())
        result = await self._outcome(claimed, site, provider, message, reply, account, taken)
        return dataclasses.replace(result, began_at=began_at)

    async def _outcome(
        self,
        claimed: Claimed,
        site: Site,
        provider: Provider,
        message: Outbound,
        reply: SendReply,
        account: str,
        taken: tuple[float, float],
    ) -> SendResult:
        """What the provider's answer to one send means. `taken`: when the request left and
        when its answer was back (wall-clock seconds)."""
        if reply.status == "accepted":
            await self._gw.credits.after_send(account, site, provider, reply.balance, *taken)
            return SendResult(
                "sent",
                provider_message_id=reply.provider_message_id,
                segments=reply.segments,
                cost=reply.cost,
            )
        if reply.status == "ambiguous":
            try:
                found = await self._lookup(provider, message, claimed.site_id)
            except ProviderError:
                found = Found(None)
            if found.sent:
                return self._already_there(found)
            return SendResult(
                "retry",
                error=f"{reply.detail}; not found at the provider yet, so it is looked up "
                "again before any resend",
            )
        if reply.status in ("rate_limited", "unavailable", "not_sent"):
            return SendResult("retry", error=reply.detail, retry_after=reply.retry_after)
        if reply.status == "no_credit":
            reason = "no credits left"
            if reply.balance is not None and reply.required is not None:
                reason += f" (balance {reply.balance:g}, this message needs {reply.required:g})"
            await self._gw.credits.hold(
                account, site, provider, reason, balance=reply.balance, required=reply.required
            )
            return SendResult("hold", error=reason)
        if reply.status == "bad_credentials":
            reason = f"the provider refused the account's credentials ({reply.detail})"
            await self._gw.credits.hold(
                account, site, provider, reason, balance=None, required=None
            )
            return SendResult("hold", error=reason)
        if reply.status == "destination_refused":
            # A configuration error, as refused credentials are: held with the reason until
            # the settings change (a new URL is a new account) — never retried blindly.
            await self._gw.credits.hold(
                account, site, provider, reply.detail, balance=None, required=None
            )
            return SendResult("hold", error=reply.detail)
        if reply.status == "opted_out":
            await self._provider_opt_out(claimed)
            return SendResult(
                "failed",
                error=f"the provider blocks this recipient (they opted out): {reply.detail}",
                provider_response=reply.detail,
            )
        return SendResult("failed", error=reply.detail, provider_response=reply.detail)

    @staticmethod
    def _already_there(found: Found) -> SendResult:
        return SendResult(
            "sent",
            provider_message_id=found.provider_message_id,
            segments=found.segments,
            cost=found.cost,
            provider_response="the provider already had it (found by reference); not sent again",
        )

    async def _lookup(self, provider: Provider, message: Outbound, site_id: str) -> Found:
        taken: Sequence[str] = ()
        if provider.kind in CONTENT_SEARCHED:
            taken = await self._ids_of_others(message, site_id)
        return await provider.lookup(message, taken)

    async def _ids_of_others(self, message: Outbound, site_id: str) -> list[str]:
        """Provider ids our ledger already gives to other messages to the same number."""
        m = self._gw.dispatch.messages
        async with self._gw.ctx.db() as session:
            rows = await session.execute(
                sa.select(m.c.provider_message_id).where(
                    m.c.recipient == message.to,
                    sa.not_(sa.and_(m.c.site_id == site_id, m.c.message_id == message.reference)),
                    m.c.provider_message_id.is_not(None),
                )
            )
            return [r[0] for r in rows]

    async def _provider_opt_out(self, claimed: Claimed) -> None:
        """The carrier blocks the number (it replied STOP to them): our list follows."""
        self._gw.suppression.apply(
            RecipientOptedOut(
                group_id=claimed.group_id,
                channel="sms",
                recipient=claimed.recipient,
                how="provider",
            )
        )
        await self._gw.engine.queue.suppress_recipient(
            claimed.group_id, claimed.recipient, reason="the provider reports an opt-out"
        )
        await record_opt_out(
            self._gw.ctx.nc,
            group_id=claimed.group_id,
            channel="sms",
            recipient=claimed.recipient,
            how="provider",
            actor="service:sms_gateway",
            site_id=claimed.site_id,
        )

    async def reconcile(self, claimed: Claimed, site: Site) -> Reconciled:
        """Did a send interrupted by a crash reach the provider? Ask it."""
        try:
            provider = self._gw.providers.for_site(site)
        except NotConfigured as exc:
            return Reconciled(None, detail=str(exc))
        found = await self._lookup(
            provider, self.outbound(claimed, site, provider), claimed.site_id
        )
        return Reconciled(found.sent, found.provider_message_id, "looked up at the provider")

    async def on_tick(self, tick: TickIssued, sites: Sequence[Site]) -> None:
        """Nothing besides sending: replies and receipts arrive by webhook."""

    async def account_resumed(self, account: str, site: Site) -> bool:
        """Credits back? (polls the balance, at most every `resume_poll_seconds`)."""
        return await self._gw.credits.try_resume(account, site)
