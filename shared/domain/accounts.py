"""Provider accounts: sites that share credentials share one account, and its limits.

An account id is derived from what identifies the account at the provider (never from a
secret), so every service computes the same id and several sites with the same SMTP login or
SMS account share one rate, one daily cap and one credit balance.
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


def sms_account_id(provider: SmsProvider) -> str | None:
    """The SMS account a site sends through, or None when SMS is off."""
    if provider.kind == "none":
        return None
    return f"sms-{_digest(provider.kind, provider.base_url, provider.account_id)}"


def email_account_id(email: EmailSettings) -> str | None:
    """The SMTP account a site sends through, or None when email is off or unconfigured."""
    if not email.enabled or not email.smtp.host:
        return None
    login = email.smtp.username or email.address
    return f"email-{_digest(email.smtp.host.lower(), str(email.smtp.port), (login or '').lower())}"
