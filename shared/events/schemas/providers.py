"""SMS provider accounts (the PROVIDERS stream): credits, top-ups, holds, provider tests.

Credit events go to `credits.<account>`, provider tests to `provider.<account>`, where the
account is `shared.domain.accounts.sms_account_id` (sites sharing credentials share it).
Amounts are in the provider's unit: `credits` (the simulator, prepaid SMS credits) or `money`
(Twilio: the account balance in `currency`).
"""

from __future__ import annotations

from typing import Literal

from shared.events.envelope import EventData
from shared.events.registry import registry

Unit = Literal["credits", "money"]
BalanceSource = Literal["send", "test", "poll", "topup"]


@registry.register
class CreditBalanceReported(EventData):
    """The account's balance as the provider last reported it (after sends, a test, a poll).

    Reports after sends are coalesced: at most one per account every few seconds, carrying the
    latest balance and how many sends it covers.
    """

    event_type = "stagger.credits.balance_reported"
    event_version = 1

    account: str
    provider: str
    balance: float
    unit: Unit
    currency: str | None = None
    source: BalanceSource
    sends: int = 0
    site_id: str | None = None


@registry.register
class CreditLow(EventData):
    """The balance fell below the site's low-credit threshold (once per crossing)."""

    event_type = "stagger.credits.low"
    event_version = 1

    account: str
    provider: str
    balance: float
    unit: Unit
    threshold: float
    site_id: str | None = None


@registry.register
class CreditTopupRequested(EventData):
    """An automatic top-up was asked of the provider (the site's `auto_topup_amount`)."""

    event_type = "stagger.credits.topup_requested"
    event_version = 1

    account: str
    provider: str
    amount: float
    balance_before: float
    ok: bool
    balance_after: float | None = None
    error: str | None = None
    site_id: str | None = None


@registry.register
class CreditTopupNeeded(EventData):
    """The account is held for credit and its provider has no top-up call: someone must buy
    credit at the provider (`topup_url`); sending resumes by itself once they have."""

    event_type = "stagger.credits.topup_needed"
    event_version = 1

    account: str
    provider: str
    reason: str
    balance: float | None = None
    topup_url: str | None = None
    site_id: str | None = None


@registry.register
class SendingHeld(EventData):
    """The account cannot send (no credits, refused credentials): its SMS stay queued."""

    event_type = "stagger.credits.sending_held"
    event_version = 1

    account: str
    provider: str
    reason: str
    balance: float | None = None
    required: float | None = None
    site_id: str | None = None


@registry.register
class SendingResumed(EventData):
    """The account can send again (credits returned); queued SMS go on their next tick."""

    event_type = "stagger.credits.sending_resumed"
    event_version = 1

    account: str
    provider: str
    balance: float | None = None
    site_id: str | None = None


@registry.register
class ProviderTested(EventData):
    """A provider test (credentials and balance) and what the provider said."""

    event_type = "stagger.provider.tested"
    event_version = 1

    account: str
    provider: str
    group_id: str
    site_id: str
    ok: bool
    balance: float | None = None
    unit: Unit | None = None
    error: str | None = None
