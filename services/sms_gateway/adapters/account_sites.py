"""Sites by the SMS provider account they send through, for webhooks and replies.

A receipt or reply names a provider account; finding its sites by scanning every site costs
about a millisecond per webhook at a thousand sites, so the index is rebuilt only when the
site directory changes.

A site naming a secondary account (failover) is found on that account too, as it sends
through it (`domain.failover.swapped`): its receipts, replies and webhook secrets are then the
secondary account's.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from services.sms_gateway.domain import failover
from shared.domain.accounts import sms_account_id
from shared.domain.reply_attribution import SiteLine
from shared.sites import Site, SiteDirectory


class AccountSites:
    """(provider kind, provider account id) → the sites sending through it."""

    def __init__(self) -> None:
        self._generation = -1
        self._directory: SiteDirectory | None = None
        self._by_account: dict[tuple[str, str], tuple[SiteLine, ...]] = {}
        # (account key, site id) of the sites found on an account as their secondary.
        self._secondary: frozenset[tuple[tuple[str, str], str]] = frozenset()

    def on_account(
        self, directory: SiteDirectory, provider: str, account_id: str | None
    ) -> tuple[SiteLine, ...]:
        """The sites of any group that send through this account."""
        if not account_id:
            return ()
        if directory is not self._directory or directory.generation != self._generation:
            self._rebuild(directory)
        return self._by_account.get((provider, account_id), ())

    def sites(self, directory: SiteDirectory, provider: str, account_id: str | None) -> list[Site]:
        """The current settings of the sites of any group that send through this account."""
        lines = self.on_account(directory, provider, account_id)
        found = []
        for line in lines:
            site = directory.get(line.site_id)
            if site is None:
                continue
            if ((provider, account_id or ""), site.site_id) in self._secondary:
                swapped = failover.swapped(site.settings)
                if swapped is None:  # changed since the index was built
                    continue
                site = dataclasses.replace(site, settings=swapped)
            found.append(site)
        return found

    def _rebuild(self, directory: SiteDirectory) -> None:
        generation = directory.generation
        found: dict[tuple[str, str], list[SiteLine]] = defaultdict(list)
        secondary: set[tuple[tuple[str, str], str]] = set()
        for site in directory.all():
            sms = site.settings.sms
            for provider, standby in ((sms.provider, False), (sms.secondary_provider, True)):
                if provider.kind == "none" or not provider.account_id:
                    continue
                key = (provider.kind, provider.account_id)
                found[key].append(
                    SiteLine(
                        group_id=site.group_id,
                        site_id=site.site_id,
                        provider=provider.kind,
                        account_id=provider.account_id,
                        account=sms_account_id(provider, site.group_id),
                        sender=sms.sender_id,
                    )
                )
                if standby:
                    secondary.add((key, site.site_id))
        self._by_account = {key: tuple(lines) for key, lines in found.items()}
        self._secondary = frozenset(secondary)
        self._directory, self._generation = directory, generation
