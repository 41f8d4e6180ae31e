"""Which keys may verify a provider webhook (pure rules; the keys are opened by the caller).

- Simulator: only the webhook secrets of the sites on the account the webhook names. The
  public development secret verifies only the simulator's default account, and only when no
  site of it keeps a secret of its own.
- Twilio: only tokens a provider test succeeded with, recognised by their fingerprint (the
  secret cannot be recovered from it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from shared.sms_signing import DEV_ACCOUNT, DEV_WEBHOOK_SECRET


def fingerprint(kind: str, base_url: str | None, account_id: str | None, secret: str) -> str:
    """What identifies one set of tested credentials (the secret cannot be recovered)."""
    raw = "\x1f".join(("stagger-provider-test", kind, base_url or "", account_id or "", secret))
    return hashlib.sha256(raw.encode()).hexdigest()


def simulator_keys(opened: Iterable[str | None], account: str, *, has_sites: bool) -> list[str]:
    """The keys that may sign the simulator `account`'s webhooks, from its sites' secrets."""
    own = sorted({secret for secret in opened if secret})
    if own:
        return own
    if account == DEV_ACCOUNT and has_sites:
        return [DEV_WEBHOOK_SECRET]
    return []
