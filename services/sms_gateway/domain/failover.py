"""Failover to a site's secondary provider account (pure rules, no I/O, no clock).

- A site sends through its primary account (`sms.provider`). While that account is held (no
  credit, refused credentials or destination, or an outage longer than
  `sms.failover_after_seconds`), messages of a site naming a secondary account
  (`sms.secondary_provider`) go through the secondary instead.
- The site "as it sends through the secondary" is the same site with the two accounts swapped:
  every rule keyed on `sms.provider` (the account id, the adapter, the rate, the credits) then
  names the secondary, and `sms.secondary_provider` names the account the message may have
  been tried through before, which is settled by a lookup there first.
- Back to the primary: as soon as its hold is released (its balance poll shows it can send),
  new sends go through it again; nothing already handed to the secondary moves back.
"""

from __future__ import annotations

from shared.domain.settings_sms import SmsSettings
from shared.domain.site_settings import SiteSettings

OUTAGE_STATUSES = frozenset({"unavailable", "not_sent", "ambiguous"})
"""Provider answers that mean the account cannot be reached (5xx, no connection, no answer);
a rate limit is not an outage."""

CERTAINLY_NOT_STORED = frozenset({"not_sent", "rate_limited"})
"""Answers that say for certain the provider did not store the message (the request never
reached it, or it refused it with 429): an attempt answered so needs no lookup there before the
message goes through the other account. A 5xx is not among them: like a missing answer, it is
settled by a lookup (the gateway's rule since before failover)."""


def has_secondary(sms: SmsSettings) -> bool:
    """Whether the site names a secondary account to fail over to."""
    return sms.secondary_provider.kind != "none"


def swapped(settings: SiteSettings) -> SiteSettings | None:
    """The settings with the primary and secondary accounts swapped (None: no secondary)."""
    sms = settings.sms
    if not has_secondary(sms):
        return None
    # Both accounts were validated when the settings were written; a swap is not a new value.
    sms = sms.model_copy(
        update={"provider": sms.secondary_provider, "secondary_provider": sms.provider}
    )
    return settings.model_copy(update={"sms": sms})


def outage_began(status: str, down_since: float | None, now: float) -> float | None:
    """When the account's current run of unreachable answers began, after one more answer
    (None: the answer shows the account reachable)."""
    if status not in OUTAGE_STATUSES:
        return None
    return now if down_since is None else down_since


def outage_holds(down_since: float | None, now: float, after_seconds: float) -> bool:
    """Whether an outage has lasted long enough to hold the account and fail over."""
    return down_since is not None and now - down_since >= after_seconds


def outage_reason(seconds: float, detail: str) -> str:
    """Why an account is held for an outage (the hold's reason and the event's)."""
    reason = f"the provider has been unreachable for {seconds:.0f} s"
    return f"{reason} ({detail})" if detail else reason
