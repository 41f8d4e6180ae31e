"""Which secrets may verify a provider webhook.

- Simulator: the webhook names its account (`X-Sim-Account`); only the webhook secrets
  (`sms.provider.webhook_secret`) of sites whose provider account is that account verify it.
  The public development secret verifies only the simulator's default account, only when no
  site of that account keeps a secret of its own (and the route exists only where the
  deployment enables the simulator).
- Twilio: the form names its AccountSid; only the auth tokens of sites on that SID whose
  provider test succeeded *with that token* verify it. A site can type any SID with any token,
  so a token that Twilio never accepted proves nothing about who sent a webhook.

A successful provider test is recorded as a fingerprint of (kind, base URL, account id,
secret) per site (`sms_tested_credentials`), never the secret; changing any of them makes the
site untested until a test succeeds again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sms_gateway.adapters import tables
from services.sms_gateway.domain.webhook_trust import fingerprint, simulator_keys
from shared.db.sql import insert_ignoring_duplicates
from shared.secrets import SecretBox, SecretKeyError
from shared.sites import Site


def _open(box: SecretBox, sealed: str | None) -> str | None:
    if not sealed:
        return None
    return _opened(box, sealed)


@lru_cache(maxsize=4096)
def _opened(box: SecretBox, sealed: str) -> str | None:
    # Every simulator webhook opens the webhook secret of each site on its account: profiled
    # in a load run (100 sites on 4 accounts), 106,550 Fernet decryptions for 4,262 webhooks,
    # about a tenth of the gateway's busy time. A sealed value always opens to the same text
    # under one key ring (a box is never given new keys; a new ring is a new box), so each is
    # opened once; a changed secret is a new sealed value.
    try:
        return box.open(sealed)
    except SecretKeyError:
        return None


def simulator_secrets(box: SecretBox, sites: list[Site], account: str) -> list[str]:
    """The keys that may sign the simulator `account`'s webhooks (`sites`: that account's)."""
    opened = [_open(box, s.settings.sms.provider.webhook_secret) for s in sites]
    return simulator_keys(opened, account, has_sites=bool(sites))


class Trust:
    """Records successful provider tests and answers which secrets verify a webhook."""

    def __init__(self, box: SecretBox, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.box = box
        self._sessions = sessions

    async def record_test(self, site: Site) -> None:
        """The site's provider test succeeded with its current credentials."""
        p = site.settings.sms.provider
        secret = _open(self.box, p.secret)
        if secret is None:
            return
        row = {
            "site_id": site.site_id,
            "fingerprint": fingerprint(p.kind, p.base_url, p.account_id, secret),
            "tested_at": datetime.now(UTC),
        }
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert_ignoring_duplicates(session, tables.tested_credentials, [row])
            )

    async def twilio_tokens(self, sites: list[Site]) -> list[str]:
        """Auth tokens of these sites (one SID's) that a provider test succeeded with."""
        tested = await self.tested_sites(sites)
        return sorted({t for s in tested if (t := _open(self.box, s.settings.sms.provider.secret))})

    async def tested_sites(self, sites: list[Site]) -> list[Site]:
        """Those of `sites` whose provider test succeeded with their current credentials: a
        site can type any account id, so only these prove they hold the account."""
        if not sites:
            return []
        t = tables.tested_credentials
        async with self._sessions() as session:
            rows = await session.execute(
                sa.select(t.c.site_id, t.c.fingerprint).where(
                    t.c.site_id.in_([s.site_id for s in sites])
                )
            )
            tested = {(r.site_id, r.fingerprint) for r in rows}
        found: list[Site] = []
        for s in sites:
            p = s.settings.sms.provider
            secret = _open(self.box, p.secret)
            if secret is None:
                continue
            if (s.site_id, fingerprint(p.kind, p.base_url, p.account_id, secret)) in tested:
                found.append(s)
        return found
