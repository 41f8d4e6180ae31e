"""Provider accounts: sites of one group that share credentials share one account, and its
limits.

An account id is derived from the group and from what identifies the account at the provider
(never from a secret), so every service computes the same id and several sites of a group with
the same SMTP login or SMS account share one rate, one daily cap and one credit balance. Two
groups typing the same login never share an id: not a rate limiter, a daily cap, a hold nor a
connection (tenants never meet, even when one of them copies the other's account name).
"""

from __future__ import annotations

import functools
import hashlib

from shared.domain.site_settings import EmailSettings, SmsProvider


@functools.lru_cache(maxsize=4096)
def _digest(*parts: str | None) -> str:
    # Asked for every message a gateway claims and sends: hashed once per account.
    raw = "\x1f".join(p or "" for p in parts)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def sms_account_id(provider: SmsProvider, group_id: str) -> str | None:
    """The SMS account a site of `group_id` sends through, or None when SMS is off."""
    if provider.kind == "none":
        return None
    return f"sms-{_digest(group_id, provider.kind, provider.base_url, provider.account_id)}"


def email_account_id(email: EmailSettings, group_id: str) -> str | None:
    """The SMTP account a site of `group_id` sends through, or None when email is off or
    unconfigured."""
    if not email.enabled or not email.smtp.host:
        return None
    login = (email.smtp.username or email.address or "").lower()
    return f"email-{_digest(group_id, email.smtp.host.lower(), str(email.smtp.port), login)}"
