"""Sites by the SMS provider account they send through, for webhooks and replies.

A receipt or reply names a provider account; finding its sites by scanning every site costs
about a millisecond per webhook at a thousand sites, so the index is rebuilt only when the
site directory changes.
"""

from __future__ import annotations

from collections import defaultdict

from shared.domain.accounts import sms_account_id
from shared.domain.reply_attribution import SiteLine
from shared.sites import Site, SiteDirectory


class AccountSites:
    """(provider kind, provider account id) → the sites sending through it."""

    def __init__(self) -> None:
        self._generation = -1
        self._directory: SiteDirectory | None = None
        self._by_account: dict[tuple[str, str], tuple[SiteLine, ...]] = {}

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
        return [site for line in lines if (site := directory.get(line.site_id)) is not None]

    def _rebuild(self, directory: SiteDirectory) -> None:
        generation = directory.generation
        found: dict[tuple[str, str], list[SiteLine]] = defaultdict(list)
        for site in directory.all():
            provider = site.settings.sms.provider
            if provider.kind == "none" or not provider.account_id:
                continue
            found[(provider.kind, provider.account_id)].append(
                SiteLine(
                    group_id=site.group_id,
                    site_id=site.site_id,
                    provider=provider.kind,
                    account_id=provider.account_id,
                    account=sms_account_id(provider, site.group_id),
                    sender=site.settings.sms.sender_id,
                )
            )
        self._by_account = {key: tuple(lines) for key, lines in found.items()}
        self._directory, self._generation = directory, generation
