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
- When the account cannot pay for another segment (or the provider refuses a send for lack of
  credit, or refuses the credentials), the account is held through the engine's shared
  `AccountLimits` (its messages stay queued, nothing is lost) and `credits.sending_held` is
  emitted by the replica whose compare-and-set held it.
- While held, each tick of the account (and each receipt) may poll the balance, at most every
  `resume_poll_seconds`; once it covers what the refused message needed, the account is
  released and `credits.sending_resumed` is emitted. Nobody has to intervene.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from services.sms_gateway import tables
from services.sms_gateway.credit_states import CreditStates
from services.sms_gateway.providers import NotConfigured
from services.sms_gateway.providers.base import Provider, ProviderError
from services.sms_gateway.providers.catalogue import TOPUP_PAGES
from shared.bus import subjects
from shared.db.sql import insert_ignoring_duplicates
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

if TYPE_CHECKING:
    from services.sms_gateway.service import SmsGatewayService

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


class Credits:
    """Balance bookkeeping of every provider account this replica sends through."""

    def __init__(self, gateway: SmsGatewayService) -> None:
        self._gw = gateway
        self._reports: dict[str, _Report] = {}
        self._states = CreditStates(lambda: self._gw.ctx.db)
        self._polled: dict[str, float] = {}
        self._swept = -1e9

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
        if self._gw.settings.balance_report_seconds == 0:
            await self.flush()
        await self._observe(account, site, provider, Observation(balance, began, answered))

    async def flush(self) -> None:
        """Publish the coalesced balance reports."""
        reports, self._reports = self._reports, {}
        for account, r in reports.items():
            await self.report(account, r.provider, r.unit, r.balance, "send", r.site_id, r.sends)

    async def run(self) -> None:
        """Publish coalesced reports every `balance_report_seconds` (background task)."""
        period = self._gw.settings.balance_report_seconds or 1.0
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
        async with self._gw.ctx.db() as session, session.begin():
            await self._remember(session, account, provider, balance=balance, unit=unit)
            await self._gw.events.add(
                session, subjects.credits(account), data, site_id=site_id, about=account
            )
        self._gw.events.nudge()

    # --- threshold and top-up -------------------------------------------------------------

    def _rules(self, site: Site, provider: Provider) -> CreditRules:
        sms = site.settings.sms
        return CreditRules(
            threshold=float(sms.low_credit_threshold),
            auto_topup=sms.auto_topup_amount > 0 and provider.supports_topup,
            smallest_payment=self._smallest_payment(site, provider),
        )

    async def _observe(
        self,
        account: str,
        site: Site,
        provider: Provider,
        observation: Observation,
        *,
        may_hold: bool = True,
    ) -> float:
        """Decide a balance against the shared state and act on it (low, top-up, hold);
        returns the balance known afterwards (a top-up's, when one was made)."""
        rules = self._rules(site, provider)

        async def on_change(session: AsyncSession, decision: Decision) -> None:
            if decision.emit_low:
                await self._gw.events.add(
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
            self._gw.events.nudge()
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
        if may_hold and decision.applied and balance < rules.smallest_payment:
            await self.hold(
                account, site, provider, "no credits left", balance=balance, required=None
            )
        return balance

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
        await self._gw.events.emit(
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
        return await self._observe(
            account, site, provider, Observation(after, began, answered), may_hold=False
        )

    # --- hold and resume ----------------------------------------------------------------

    @staticmethod
    def _smallest_payment(site: Site, provider: Provider) -> float:
        """The least balance that can pay for one segment (money: anything above zero)."""
        if provider.unit == "credits":
            return max(float(site.settings.sms.provider.credits_per_segment), 1e-9)
        return 1e-9

    async def hold(
        self,
        account: str,
        site: Site,
        provider: Provider,
        reason: str,
        *,
        balance: float | None,
        required: float | None,
    ) -> None:
        """Stop the account's sending; the replica that holds it says so."""
        async with self._gw.ctx.db() as session, session.begin():
            await self._remember(session, account, provider.kind, balance=balance)
            await session.execute(
                sa.update(tables.accounts)
                .where(tables.accounts.c.account == account)
                .values(required=required)
            )
        if await self._gw.engine.limits.hold(account, reason, balance):
            log.warning("account held", extra={"account": account, "reason": reason})
            if reason.startswith(NO_CREDITS) and not provider.supports_topup:
                await self._topup_needed(account, site, provider, reason, balance)
            await self._gw.events.emit(
                subjects.credits(account),
                SendingHeld(
                    account=account,
                    provider=provider.kind,
                    reason=reason,
                    balance=balance,
                    required=required,
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
        await self._gw.events.emit(
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
        if now - self._polled.get(account, -1e9) < self._gw.settings.resume_poll_seconds:
            return False
        self._polled[account] = now
        try:
            provider = self._gw.providers.for_site(site)
            began = time.time()
            balance = await provider.balance()
        except (NotConfigured, ProviderError) as exc:
            log.info("held account still cannot send", extra={"account": account, "why": str(exc)})
            return False
        # A held account stays held (and keeps what the refused message needed) until the
        # balance below covers it: this observation only moves the low state (or tops up).
        amount = await self._observe(
            account, site, provider, Observation(balance.amount, began, time.time()), may_hold=False
        )
        async with self._gw.ctx.db() as session:
            required = (
                await session.execute(
                    sa.select(tables.accounts.c.required).where(
                        tables.accounts.c.account == account
                    )
                )
            ).scalar()
        needed = max(required or 0.0, self._smallest_payment(site, provider))
        if amount < needed:
            return False
        if await self._gw.engine.limits.release(account, amount):
            log.info("account resumed", extra={"account": account, "balance": amount})
            await self._gw.events.emit(
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
        if now - self._swept < self._gw.settings.resume_poll_seconds:
            return
        self._swept = now
        limiters = self._gw.dispatch.limiters
        async with self._gw.ctx.db() as session:
            held = (
                (await session.execute(sa.select(limiters.c.account).where(limiters.c.held)))
                .scalars()
                .all()
            )
        for account in held:
            site = next(
                (
                    s
                    for s in self._gw.engine.sites.all()
                    if self._gw.adapter.account_for(s) == account
                ),
                None,
            )
            if site is not None:
                await self.try_resume(account, site)

    # --- storage ------------------------------------------------------------------------

    async def _remember(
        self,
        session: AsyncSession,
        account: str,
        provider: str,
        *,
        balance: float | None = None,
        unit: str | None = None,
    ) -> None:
        """Make sure the account has a row; store the balance when given."""
        t = tables.accounts
        await session.execute(
            insert_ignoring_duplicates(
                session,
                t,
                [{"account": account, "provider": provider, "low": False}],
            )
        )
        if balance is not None:
            values: dict[str, object] = {"balance": balance, "updated_at": datetime.now(UTC)}
            if unit is not None:
                values["unit"] = unit
            await session.execute(sa.update(t).where(t.c.account == account).values(**values))
