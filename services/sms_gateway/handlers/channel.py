"""The SMS side of the delivery engine (`shared.dispatch.adapter.ChannelAdapter`).

The engine claims messages on ticks, paces them and records every outcome; this adapter asks
the provider and carries out what the pure rules (`domain.sending`, `domain.outcomes`,
`domain.credit_hold`) decide:

- `check`, before any provider call: the group's suppression list (an opted-out number ends
  `suppressed`), E.164 and body length (the provider's maximum), a usable provider and sender,
  and the recipient's quiet hours in their local time (`defer` to the next allowed instant).
- `send`: our message id is the provider's reference. A message that was attempted before is
  first looked up at the provider and never POSTed again if the provider has it. An answer
  that never came (timeout, dropped connection) is *ambiguous*: it is looked up at once, and
  otherwise retried later through the same lookup-first path — never re-sent blindly.
- `reconcile`, after a crash: the lookup decides whether the interrupted send happened.
- `account_resumed`: while credits are out, polls the balance so sending resumes by itself.
- `failover`: the site as it sends through its secondary account while the primary is held
  (`domain.failover`). A message attempted before is looked up through *both* accounts before
  any POST, so a send left uncertain on one is settled before the message goes through the
  other. An outage longer than `sms.failover_after_seconds` holds the primary (only where a
  secondary can take over).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.sms_gateway.adapters.ledger import Ledger
from services.sms_gateway.adapters.optouts import BusOptOuts
from services.sms_gateway.adapters.providers import NotConfigured, Providers
from services.sms_gateway.adapters.providers.base import Found, Outbound, Provider, ProviderError
from services.sms_gateway.adapters.providers.catalogue import CONTENT_SEARCHED
from services.sms_gateway.domain import failover, outcomes, sending
from services.sms_gateway.domain.credit_hold import Refused
from services.sms_gateway.handlers.credits import Credits
from shared.dispatch.adapter import SEND, AccountLimitsSpec, Reconciled, SendResult, Verdict
from shared.dispatch.queue import Claimed, MessageQueue
from shared.domain.accounts import sms_account_id
from shared.domain.consent import message_category
from shared.events.schemas.messages import AUTO_REPLY
from shared.events.schemas.optouts import RecipientOptedOut
from shared.events.schemas.ticks import TickIssued
from shared.sites import Site
from shared.suppression import SuppressionList

MISCONFIGURED_RETRY = sending.MISCONFIGURED_RETRY
MAX_REMEMBERED = 100_000
"""Messages whose failed attempts a replica remembers as certain (see `_certainly_absent`)."""
UNTOLD_PATIENCE = timedelta(minutes=15)
"""How long that may go on before each wait uses one of the message's attempts."""


def account_for(site: Site) -> str | None:
    """The provider account (sites of a group with the same credentials share it)."""
    return sms_account_id(site.settings.sms.provider, site.group_id)


def failover_site(site: Site) -> Site | None:
    """The site with its secondary account as the one it sends through (None: none)."""
    settings = failover.swapped(site.settings)
    return None if settings is None else dataclasses.replace(site, settings=settings)


def _verdict(decision: sending.Decision) -> Verdict:
    return SEND if decision.kind == "send" else Verdict(*dataclasses.astuple(decision))


class SmsAdapter:
    """SMS providers behind the delivery engine."""

    channel: Literal["sms", "email"] = "sms"

    def __init__(
        self,
        *,
        default_sender: str,
        suppression: Callable[[], SuppressionList],
        providers: Callable[[], Providers],
        credits: Credits,
        ledger: Ledger,
        queue: Callable[[], MessageQueue],
        optouts: BusOptOuts,
    ) -> None:
        self._default_sender = default_sender
        self._suppression = suppression
        self._providers = providers
        self._credits = credits
        self._ledger = ledger
        # Made after `register` (providers need the key ring, the suppression list NATS, and
        # the engine makes its queue in `start`): read at the time of use.
        self._queue = queue
        self._optouts = optouts
        # Per account, when its current run of unreachable answers began (monotonic seconds).
        # Each replica judges an outage by its own sends; the hold it leads to is shared.
        self._down_since: dict[str, float] = {}
        # (message key, account) → how many attempts the message had when this replica last
        # saw that none of them can have left it at that account (none was POSTed there, or
        # each POST there was certainly refused: no connection, 429). While the count still
        # matches, a failover needs no lookup there (one an outage would refuse). Unknown
        # (another replica, a restart): the lookup decides.
        self._certainly_absent: dict[tuple[tuple[str, str], str], int] = {}
        # Message key → when its latest attempt that may have reached the provider began
        # (this replica's POST, or, for an attempt made elsewhere, when this replica first
        # looked: it may have been just before). Lagging reports count from it.
        self._attempted_at: dict[tuple[str, str], datetime] = {}
        # Message key → when the provider first could not tell whether it has the message.
        self._untold_since: dict[tuple[str, str], datetime] = {}

    def account_for(self, site: Site) -> str | None:
        """The provider account (sites of a group with the same credentials share it)."""
        return account_for(site)

    def limits_for(self, site: Site) -> AccountLimitsSpec:
        """The account's hard rate: one send every 1/rate seconds, no burst."""
        rate = site.settings.sms.provider.rate_per_second
        return AccountLimitsSpec(interval=timedelta(seconds=1 / rate), burst=1)

    def failover(self, site: Site) -> Site | None:
        """The site with its secondary account as the one it sends through (None: none)."""
        return failover_site(site)

    def sender(self, site: Site, provider: Provider) -> str | None:
        """Who the message is from: the site's sender ID, else the gateway's default where
        the provider allows one."""
        return sending.sender(
            site.settings.sms.sender_id, provider.needs_sender, self._default_sender
        )

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
        category = message_category(
            claimed.message.consent_category,
            claimed.message.category,
            site.settings.consent.categories,
        )
        # The STOP confirmation is the one message an opted-out number still gets (the
        # gateway queues it itself; the API refuses the category).
        auto = claimed.message.category == AUTO_REPLY
        if not auto and self._suppression().is_suppressed(
            claimed.group_id, "sms", claimed.recipient_key, category
        ):
            return Verdict("suppress", f"the recipient opted out of this group's {category} SMS")
        body = claimed.message.body
        decided = sending.decide_message(claimed.recipient, body)
        if decided.kind != "send":
            return _verdict(decided)
        try:
            provider = self._providers().for_site(site)
        except NotConfigured as exc:
            return Verdict("defer", f"{exc}; waiting for the settings", now + MISCONFIGURED_RETRY)
        decided = sending.decide_provider(
            body, provider.kind, provider.max_body_chars, self.sender(site, provider), now
        )
        if decided.kind != "send":
            return _verdict(decided)
        return _verdict(self._quiet_hours(claimed, site, now))

    @staticmethod
    def _quiet_hours(claimed: Claimed, site: Site, now: datetime) -> sending.Decision:
        setting = site.settings.sms.quiet_hours
        return sending.decide_quiet_hours(
            claimed.recipient, setting.start, setting.end, site.settings.profile.timezone, now
        )

    # --- the provider ----------------------------------------------------------------------

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        """Hand one message to the provider (looking it up first if attempted before)."""
        accounts = [self.account_for(site) or ""]
        if (other := self.failover(site)) is not None:
            accounts.append(account_for(other) or "")
        posted: list[str] = []  # the provider's answer to the POST, when one was made
        try:
            result = await self._send(claimed, site, accounts[0], posted)
        except ProviderError:
            self._note_attempt(claimed, accounts, posted)  # a lookup failed: nothing POSTed
            raise
        except BaseException:
            for account in accounts:  # what happened is unknown: lookups decide from now on
                self._certainly_absent.pop((claimed.key, account), None)
            raise
        if result.outcome in ("sent", "failed"):
            for account in accounts:  # finished: nothing to remember
                self._certainly_absent.pop((claimed.key, account), None)
            self._attempted_at.pop(claimed.key, None)
            self._untold_since.pop(claimed.key, None)
        elif result.outcome != "hold":  # a hold uses no attempt: the counts stay as they are
            self._note_attempt(claimed, accounts, posted)
        return result

    async def _send(
        self, claimed: Claimed, site: Site, account: str, posted: list[str]
    ) -> SendResult:
        try:
            provider = self._providers().for_site(site)
        except NotConfigured as exc:
            return SendResult("retry", error=str(exc))
        message = self.outbound(claimed, site, provider)
        if claimed.attempts > 0:
            message = self._as_attempted(claimed, message)
            try:
                found = await self._lookup(provider, message, claimed)
            except ProviderError as exc:
                # The account cannot be asked: part of an outage, as an unanswered send is.
                await self._watch_outage(account, site, provider, "not_sent", str(exc))
                raise
            if found.sent:
                return self._already_there(found)
            if found.sent is None and (waiting := self._untold(claimed)) is not None:
                return waiting
        if claimed.attempts > 0:
            elsewhere = await self._settle_elsewhere(claimed, site)
            if elsewhere is not None:
                return elsewhere
        now = datetime.now(UTC)
        late = self._quiet_hours(claimed, site, now)
        if late.retry_at is not None:
            # The guard closed between the claim and now: not a single message past it.
            wait = sending.wait_until(late.retry_at, now)
            return SendResult("retry", error=late.reason, retry_after=wait)
        began_at = datetime.now(UTC)
        self._remember(self._attempted_at, claimed.key, began_at)
        self._untold_since.pop(claimed.key, None)
        reply = await provider.send(message)
        posted.append(reply.status)
        # The provider took the balance it answers with between these two instants (the
        # child's own start of the POST is the closer one). Wall clock, not the loop's: the
        # credit state compares them across replicas.
        began_at = reply.began_at or began_at
        decided = outcomes.outcome(
            reply.status,
            reply.detail,
            balance=reply.balance,
            required=reply.required,
            retry_after=reply.retry_after,
        )
        await self._watch_outage(account, site, provider, reply.status, reply.detail)
        if decided.state == "sent":
            taken = (began_at.timestamp(), time.time())
            await self._credits.after_send(account, site, provider, reply.balance, *taken)
            result = SendResult(
                "sent",
                provider_message_id=reply.provider_message_id,
                segments=reply.segments,
                cost=reply.cost,
            )
        else:
            result = await self._carry_out(claimed, site, provider, message, account, decided)
        return dataclasses.replace(result, began_at=began_at)

    def _as_attempted(self, claimed: Claimed, message: Outbound) -> Outbound:
        """`message` with when its latest attempt may have reached the provider."""
        attempted = self._attempted_at.get(claimed.key)
        if attempted is None:
            # Attempted by another replica, or before a restart: maybe a moment ago.
            attempted = datetime.now(UTC)
            self._remember(self._attempted_at, claimed.key, attempted)
        return dataclasses.replace(message, attempted_at=attempted)

    def _untold(self, claimed: Claimed) -> SendResult | None:
        """The provider cannot tell yet whether an earlier attempt reached it: a POST now could
        send the message twice, so it waits without using an attempt; after `UNTOLD_PATIENCE`
        each wait uses one, so a provider that never tells ends it `failed`, not stuck."""
        now = datetime.now(UTC)
        since = self._untold_since.get(claimed.key)
        if since is None:
            since = now
            self._remember(self._untold_since, claimed.key, now)
        return SendResult(
            "retry",
            error=outcomes.cannot_tell_yet(),
            attempt_used=now - since > UNTOLD_PATIENCE,
        )

    @staticmethod
    def _remember(
        memory: dict[tuple[str, str], datetime], key: tuple[str, str], at: datetime
    ) -> None:
        if len(memory) >= MAX_REMEMBERED:
            memory.clear()  # forgetting makes the next look count from then: safe
        memory[key] = at

    async def _carry_out(
        self,
        claimed: Claimed,
        site: Site,
        provider: Provider,
        message: Outbound,
        account: str,
        decided: outcomes.Outcome,
    ) -> SendResult:
        """What the engine records for an answer other than `accepted`."""
        if decided.state == "look_up":
            try:
                found = await self._lookup(provider, message, claimed)
            except ProviderError:
                found = Found(None)
            if found.sent:
                return self._already_there(found)
            return SendResult("retry", error=outcomes.not_found_after_ambiguous(decided.reason))
        if decided.state == "retry":
            return SendResult("retry", error=decided.reason, retry_after=decided.retry_after)
        if decided.state == "hold" and decided.refused is not None:
            await self._credits.refused(account, site, provider, decided.refused)
            return SendResult("hold", error=decided.reason)
        if decided.state == "opted_out":
            await self._provider_opt_out(claimed)
        return SendResult("failed", error=decided.reason, provider_response=decided.detail)

    async def _watch_outage(
        self, account: str, site: Site, provider: Provider, status: str, detail: str
    ) -> None:
        """Hold the account once it has been unreachable for `failover_after_seconds`, where a
        secondary account can take over (without one, retries with back-off, as before)."""
        now = time.monotonic()
        since = failover.outage_began(status, self._down_since.get(account), now)
        if since is None:
            self._down_since.pop(account, None)
            return
        self._down_since[account] = since
        sms = site.settings.sms
        if not failover.has_secondary(sms) or not failover.outage_holds(
            since, now, sms.failover_after_seconds
        ):
            return
        reason = failover.outage_reason(now - since, detail)
        await self._credits.refused(account, site, provider, Refused("unreachable", reason))
        # A new run begins: the hold's resume poll decides when the account is back.
        self._down_since.pop(account, None)

    def _absent_for_certain(self, claimed: Claimed, account: str) -> bool:
        """Whether every attempt of the message so far was certainly refused by `account`
        (as this replica saw): then it is not there, and no lookup is needed to say so."""
        if claimed.attempts == 0:
            return True
        return self._certainly_absent.get((claimed.key, account)) == claimed.attempts

    def _note_attempt(self, claimed: Claimed, accounts: list[str], posted: list[str]) -> None:
        """After an attempt: per account, whether the message can still not be there. It
        cannot when no attempt so far was POSTed to that account or each POST was certainly
        refused (`failover.CERTAINLY_NOT_STORED`); then moving it needs no lookup there."""
        for n, account in enumerate(accounts):
            key = (claimed.key, account)
            if not self._absent_for_certain(claimed, account) or (
                n == 0 and posted and posted[0] not in failover.CERTAINLY_NOT_STORED
            ):
                self._certainly_absent.pop(key, None)
                continue
            if len(self._certainly_absent) >= MAX_REMEMBERED:
                self._certainly_absent.clear()  # forgetting only costs a lookup
            self._certainly_absent[key] = claimed.attempts + 1

    async def _settle_elsewhere(self, claimed: Claimed, site: Site) -> SendResult | None:
        """A message attempted before may have been tried through the site's other account
        (before or after a failover): look it up there before this account sends it.

        None: not there (or no other account), send here. `sent` with that account: it is
        there. `retry`: that account cannot tell now, so nothing is sent until it can.
        """
        other = self.failover(site)
        if other is None:
            return None
        if self._absent_for_certain(claimed, account_for(other) or ""):
            return None
        try:
            provider = self._providers().for_site(other)
        except NotConfigured:
            return None  # an account that cannot send never had it
        try:
            found = await self._lookup(provider, self.outbound(claimed, other, provider), claimed)
        except ProviderError as exc:
            found, why = Found(None), str(exc)
        else:
            why = "it cannot tell yet"
        if found.sent:
            return dataclasses.replace(self._already_there(found), account=account_for(other))
        if found.sent is None:
            return SendResult("retry", error=outcomes.unsettled_elsewhere(why))
        return None

    @staticmethod
    def _already_there(found: Found) -> SendResult:
        return SendResult(
            "sent",
            provider_message_id=found.provider_message_id,
            segments=found.segments,
            cost=found.cost,
            provider_response=outcomes.ALREADY_THERE,
        )

    async def _lookup(self, provider: Provider, message: Outbound, claimed: Claimed) -> Found:
        taken: Sequence[str] = ()
        if provider.kind in CONTENT_SEARCHED:
            # The ledger files the recipient by its tag once personal fields are sealed (the
            # opened number in `message.to` matches no row then).
            taken = await self._ledger.ids_of_others(
                claimed.recipient_key, message.reference, claimed.site_id
            )
        return await provider.lookup(message, taken)

    async def _provider_opt_out(self, claimed: Claimed) -> None:
        """The carrier blocks the number (it replied STOP to them): our list follows."""
        self._suppression().apply(
            RecipientOptedOut(
                group_id=claimed.group_id,
                channel="sms",
                recipient=claimed.recipient,
                how="provider",
                recipient_tag=claimed.lookup,
            )
        )
        await self._queue().suppress_recipient(
            claimed.group_id, claimed.recipient_key, reason="the provider reports an opt-out"
        )
        await self._optouts.opted_out(
            claimed.group_id, claimed.recipient, "provider", site_id=claimed.site_id
        )

    async def reconcile(self, claimed: Claimed, site: Site) -> Reconciled:
        """Did a send interrupted by a crash reach the provider? Ask it (and, where the site
        has a secondary account, ask that one too: the send may have been a failover)."""
        other = self.failover(site)
        if other is None:
            found = await self._look_through(claimed, site)
            return Reconciled(found.sent, found.provider_message_id, "looked up at the provider")
        answers: list[Found] = []
        for candidate in (site, other):
            try:
                found = await self._look_through(claimed, candidate)
            except ProviderError:
                found = Found(None)  # this account cannot tell now; the other still might
            if found.sent:
                return Reconciled(
                    True,
                    found.provider_message_id,
                    "looked up at the provider",
                    account=account_for(candidate),
                )
            answers.append(found)
        absent = all(a.sent is False for a in answers)
        return Reconciled(False if absent else None, None, "looked up through both accounts")

    async def _look_through(self, claimed: Claimed, site: Site) -> Found:
        """Look a message up through the site's account (NotConfigured: it cannot be there)."""
        try:
            provider = self._providers().for_site(site)
        except NotConfigured:
            return Found(None) if self.failover(site) is None else Found(False)
        return await self._lookup(provider, self.outbound(claimed, site, provider), claimed)

    async def on_tick(self, tick: TickIssued, sites: Sequence[Site]) -> None:
        """Nothing besides sending: replies and receipts arrive by webhook."""

    async def account_resumed(self, account: str, site: Site) -> bool:
        """Credits back? (polls the balance, at most every `resume_poll_seconds`)."""
        return await self._credits.try_resume(account, site)
