"""The settings page's questions about a site's mail accounts: what they last did, and a
connect-and-log-in test now."""

from __future__ import annotations

from typing import Any

from services.email_gateway.adapters.channel import EmailAdapter
from services.email_gateway.adapters.mailbox import imap_endpoint
from shared.dispatch.ports import Sites
from shared.domain.accounts import email_account_id
from shared.secrets import SecretBox


class Accounts:
    """Answers account-status and account-test requests."""

    def __init__(self, sites: Sites, adapter: EmailAdapter, box: SecretBox) -> None:
        self._sites = sites
        self._adapter = adapter
        self._box = box

    async def status(self, site_id: str) -> dict[str, Any]:
        """What the site's SMTP (and IMAP) account last did."""
        site = self._sites.get(site_id)
        if site is None:
            return {
                "site_id": site_id,
                "ok": None,
                "last_error": "unknown site",
                "checked_at": None,
            }
        account = email_account_id(site.settings.email, site.group_id)
        answer: dict[str, Any] = {
            "site_id": site_id,
            "account": account,
            "ok": None,
            "last_error": None,
            "checked_at": None,
        }
        if account is None:
            answer["last_error"] = "email is disabled or has no SMTP server"
            return answer
        state = await self._adapter.health.get(account)
        if state is not None:
            answer.update(state)
        imap = None
        try:
            endpoint = imap_endpoint(site, self._box)
        except Exception:
            endpoint = None
        if endpoint is not None:
            imap = await self._adapter.health.get(endpoint.account)
        answer["imap"] = imap
        return answer

    async def test(self, site_id: str) -> dict[str, Any]:
        """Connect and log in to the site's accounts now; the status with the result."""
        site = self._sites.get(site_id)
        if site is None:
            return {"ok": False, "last_error": "unknown site"}
        result = await self._adapter.test_account(site)
        return {**(await self.status(site.site_id)), **result}
