"""Credits: balance reports, the low-credit threshold, automatic top-ups, hold and resume.

- After each accepted send the provider's balance (the simulator returns it with the send) is
  noted; reports are coalesced to one `balance_reported` event per account per
  `balance_report_seconds` (one per send at 0), carrying how many sends they cover.
- Every balance learnt (a send's answer, a balance poll, a top-up's answer) is decided against
  the account's credit state, shared by the replicas (`shared.domain.credit_state`, stored by
  `credit_states`): crossing below the site's `low_credit_threshold` emits `credits.low` once
  per crossing, and, when the site sets `auto_topup_amount` and the provider can top up, one
  replica requests one top-up for that crossing. A balance that may predate the last change
  (answers of concurrent sends come back in any order, on any replica) changes nothing.
- Whether the account is held or resumed is decided by one pure state machine
  (`domain.credit_hold`); this handler carries it out: the engine's shared limiter
  holds the account (its messages stay queued, nothing is lost) and `credits.sending_held` is
  emitted by the replica whose compare-and-set held it.
- While held, each tick of the account (and each receipt) may poll the balance, at most every
  `resume_poll_seconds`; once it covers what the refused message needed, the account is
  released and `credits.sending_resumed` is emitted. Nobody has to intervene.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sms_gateway.adapters.credit_store import CreditStates, HoldRecords, remember
from services.sms_gateway.adapters.outbox import GatewayEvents
from services.sms_gateway.adapters.providers import NotConfigured, Providers
from services.sms_gateway.adapters.providers.base import Provider, ProviderError
from services.sms_gateway.adapters.providers.catalogue import TOPUP_PAGES
from services.sms_gateway.domain import credit_hold
from services.sms_gateway.domain.credit_hold import BalanceLearnt, HoldState, Refused
from shared.bus import subjects
from shared.dispatch.ports import Limiter
from shared.domain.credit_state import CreditRules, Decision, Observation
from shared.events.schemas.providers import (
    BalanceSource,
    CreditBalanceReported,
    CreditLow,
    CreditTopupNeeded,
    CreditTopupRequested,
    SendingHeld,
    SendingResumed,
)
from shared.sites import Site

log = logging.getLogger(__name__)

NO_CREDITS = "no credits left"
"""How every hold for credit's reason begins (the adapter's and the threshold's)."""

BALANCE = Gauge(
    "stagger_sms_credit_balance",
    "Last balance a provider reported for an account (credits or money, see `unit`)",
    ["account", "provider", "unit"],
)
LOW = Gauge(
    "stagger_sms_credit_low",
    "1 while an account is below its site's low-credit threshold",
    ["account"],
)


@dataclass
class _Report:
    provider: str
    unit: str
    balance: float
    site_id: str
    sends: int
    began: float


@dataclass(frozen=True)
class CreditTiming:
    """How often balance reports go out and a held account's balance is asked for."""

    report_seconds: float
    resume_poll_seconds: float


class Credits:
    """Balance bookkeeping of every provider account this replica sends through."""

    def __init__(
        self,
        timing: CreditTiming,
        sessions: async_sessionmaker[AsyncSession],
        events: GatewayEvents,
        states: CreditStates,
        holds: HoldRecords,
        providers: Callable[[], Providers],
        limits: Callable[[], Limiter],
        sites_of: Callable[[str], Iterable[Site]],
    ) -> None:
        self._timing = timing
        self._sessions = sessions
        self._events = events
        self._states = states
        self._holds = holds
        self._providers = providers
        # Made after `register` (providers need the key ring, the engine makes its limiter
        # in `start`): read at the time of use.
        self._limits = limits
        self._sites_of = sites_of
        self._reports: dict[str, _Report] = {}
        self._polled: dict[str, float] = {}
        self._swept: float | None = None

    # --- balance reports ----------------------------------------------------------------

    async def after_send(
        self,
        account: str,
        site: Site,
        provider: Provider,
        balance: float | None,
        began: float,
        answered: float,
    ) -> None:
        """A send was accepted and the provider told us the balance left. `began`: when the
        request left, `answered`: when its answer was back (wall-clock seconds: the
        provider took the balance in between; see `shared.domain.credit_state`)."""
        if balance is None:
            return
        report = self._reports.get(account)
        if report is None:
            report = self._reports[account] = _Report(
                provider.kind, provider.unit, balance, site.site_id, 0, began
            )
        # Reports are informative: of concurrent answers, the one sent last stands for them.
        if began >= report.began:
            report.balance, report.site_id, report.began = balance, site.site_id, began
            BALANCE.labels(account, provider.kind, provider.unit).set(balance)
        report.sends += 1
        if self._timing.report_seconds == 0:
            await self.flush()
        after, applied = await self._observe(
            account, site, provider, Observation(balance, began, answered)
        )
        learnt = BalanceLearnt(after, self._smallest_payment(site, provider), current=applied)
        await self._carry_out(account, site, provider, credit_hold.step(HoldState(), learnt))

    async def flush(self) -> None:
        """Publish the coalesced balance reports."""
        reports, self._reports = self._reports, {}
        for account, r in reports.items():
            await self.report(account, r.provider, r.unit, r.balance, "send", r.site_id, r.sends)

    async def run(self) -> None:
        """Publish coalesced reports every `report_seconds` (background task)."""
        period = self._timing.report_seconds or 1.0
        while True:
            await asyncio.sleep(period)
            try:
                await self.flush()
            except Exception:
                log.exception("publishing balance reports failed; will retry")

    async def report(
        self,
        account: str,
        provider: str,
        unit: str,
        balance: float,
        source: BalanceSource,
        site_id: str | None,
        sends: int = 0,
        currency: str | None = None,
    ) -> None:
        """One `balance_reported` event (and the balance remembered in SQL)."""
        BALANCE.labels(account, provider, unit).set(balance)
        data = CreditBalanceReported(
            account=account,
            provider=provider,
            balance=balance,
            unit=unit,  # type: ignore[arg-type]
            currency=currency,
            source=source,
            sends=sends,
            site_id=site_id,
        )
        async with self._sessions() as session, session.begin():
            await remember(session, account, provider, balance=balance, unit=unit)
            await self._events.add(
                session, subjects.credits(account), data, site_id=site_id, about=account
            )
        self._events.nudge()

    # --- threshold and top-up -------------------------------------------------------------

    def _rules(self, site: Site, provider: Provider) -> CreditRules:
        sms = site.settings.sms
        return CreditRules(
            threshold=float(sms.low_credit_threshold),
            auto_topup=sms.auto_topup_amount > 0 and provider.supports_topup,
            smallest_payment=self._smallest_payment(site, provider),
        )

    async def _observe(
        self, account: str, site: Site, provider: Provider, observation: Observation
    ) -> tuple[float, bool]:
        """Decide a balance against the shared low state and act on it (low, top-up);
        returns the balance known afterwards (a top-up's, when one was made) and whether
        the observation was current."""
        rules = self._rules(site, provider)

        async def on_change(session: AsyncSession, decision: Decision) -> None:
            if decision.emit_low:
                await self._events.add(
                    session,
                    subjects.credits(account),
                    CreditLow(
                        account=account,
                        provider=provider.kind,
                        balance=observation.balance,
                        unit=provider.unit,
                        threshold=rules.threshold,
                        site_id=site.site_id,
                    ),
                    group_id=site.group_id,
                    site_id=site.site_id,
                    about=account,
                )

        decision = await self._states.decide(account, provider.kind, observation, rules, on_change)
        LOW.labels(account).set(1 if decision.state.low else 0)
        if decision.emit_low:
            self._events.nudge()
            log.info(
                "credits low",
                extra={
                    "account": account,
                    "balance": observation.balance,
                    "crossing": decision.state.crossing,
                },
            )
        balance = observation.balance
        if decision.request_topup:
            amount = site.settings.sms.auto_topup_amount
            balance = await self._topup(account, site, provider, balance, amount)
        return balance, decision.applied

    async def _topup(
        self, account: str, site: Site, provider: Provider, balance: float, amount: int
    ) -> float:
        """Request the crossing's top-up (this replica won it) and take its answer."""
        after: float | None = None
        error: str | None = None
        began = time.time()
        try:
            after = (await provider.topup(amount)).amount
        except (ProviderError, NotImplementedError) as exc:
            error = str(exc)
        answered = time.time()
        await self._events.emit(
            subjects.credits(account),
            CreditTopupRequested(
                account=account,
                provider=provider.kind,
                amount=amount,
                balance_before=balance,
                ok=error is None,
                balance_after=after,
                error=error,
                site_id=site.site_id,
            ),
            group_id=site.group_id,
            site_id=site.site_id,
            about=account,
        )
        if after is None:
            return balance
        await self.report(account, provider.kind, provider.unit, after, "topup", site.site_id)
        topped, _ = await self._observe(
            account, site, provider, Observation(after, began, answered)
        )
        return topped

    # --- hold and resume (decided by `domain.credit_hold`, carried out here) --------------

    @staticmethod
    def _smallest_payment(site: Site, provider: Provider) -> float:
        return credit_hold.smallest_payment(
            provider.unit, float(site.settings.sms.provider.credits_per_segment)
        )

    async def refused(self, account: str, site: Site, provider: Provider, why: Refused) -> None:
        """The provider refused a send for a reason that holds the account."""
        await self._carry_out(account, site, provider, credit_hold.step(HoldState(), why))

    async def _carry_out(
        self, account: str, site: Site, provider: Provider, step: credit_hold.Step
    ) -> bool:
        """Do what the state machine decided; True when the account may send."""
        if step.action == "hold":
            await self._hold(account, site, provider, step.state, step.balance)
            return False
        return not step.state.held

    async def _hold(
        self,
        account: str,
        site: Site,
        provider: Provider,
        state: HoldState,
        balance: float | None,
    ) -> None:
        """Stop the account's sending; the replica that holds it says so."""
        reason = state.reason or "held"
        await self._holds.record_hold(account, provider.kind, balance, state.required)
        if await self._limits().hold(account, reason, balance):
            log.warning("account held", extra={"account": account, "reason": reason})
            if reason.startswith(NO_CREDITS) and not provider.supports_topup:
                await self._topup_needed(account, site, provider, reason, balance)
            await self._events.emit(
                subjects.credits(account),
                SendingHeld(
                    account=account,
                    provider=provider.kind,
                    reason=reason,
                    balance=balance,
                    required=state.required,
                    site_id=site.site_id,
                ),
                group_id=site.group_id,
                site_id=site.site_id,
                about=account,
            )

    async def _topup_needed(
        self, account: str, site: Site, provider: Provider, reason: str, balance: float | None
    ) -> None:
        """Ask for a top-up by hand: the provider has no top-up call (alerting hooks on this)."""
        await self._events.emit(
            subjects.credits(account),
            CreditTopupNeeded(
                account=account,
                provider=provider.kind,
                reason=reason,
                balance=balance,
                topup_url=TOPUP_PAGES.get(provider.kind),
                site_id=site.site_id,
            ),
            group_id=site.group_id,
            site_id=site.site_id,
            about=account,
        )

    async def try_resume(self, account: str, site: Site) -> bool:
        """Whether a held account may send again (polls the balance, rate-limited)."""
        now = time.monotonic()
        if not credit_hold.may_poll(
            self._polled.get(account), now, self._timing.resume_poll_seconds
        ):
            return False
        self._polled[account] = now
        try:
            provider = self._providers().for_site(site)
            began = time.time()
            balance = await provider.balance()
        except (NotConfigured, ProviderError) as exc:
            log.info("held account still cannot send", extra={"account": account, "why": str(exc)})
            return False
        # This observation only moves the low state (or tops up); the hold is decided below.
        amount, _ = await self._observe(
            account, site, provider, Observation(balance.amount, began, time.time())
        )
        held = HoldState(True, None, await self._holds.required(account))
        step = credit_hold.step(held, BalanceLearnt(amount, self._smallest_payment(site, provider)))
        if step.action != "resume":
            return False
        if await self._limits().release(account, amount):
            log.info("account resumed", extra={"account": account, "balance": amount})
            await self._events.emit(
                subjects.credits(account),
                SendingResumed(
                    account=account,
                    provider=provider.kind,
                    balance=amount,
                    site_id=site.site_id,
                ),
                group_id=site.group_id,
                site_id=site.site_id,
                about=account,
            )
        return True

    async def resume_held(self) -> None:
        """Check every held account once (after a receipt: credits may have come back)."""
        now = time.monotonic()
        if not credit_hold.may_poll(self._swept, now, self._timing.resume_poll_seconds):
            return
        self._swept = now
        for account in await self._holds.held():
            site = next(iter(self._sites_of(account)), None)
            if site is not None:
                await self.try_resume(account, site)
