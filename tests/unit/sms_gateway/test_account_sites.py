"""The account index follows the site directory."""

from __future__ import annotations

from typing import Any

from services.sms_gateway.adapters.account_sites import AccountSites
from shared.domain.site_settings import SiteSettings
from shared.sites import Site, SiteDirectory


def site(group: str, site_id: str, account: str, version: int) -> Site:
    settings: dict[str, Any] = {
        "sms": {
            "provider": {"kind": "simulator", "account_id": account},
            "sender_id": "+61491570999",
        }
    }
    return Site(group, site_id, SiteSettings.model_validate(settings), version)


def test_sites_are_found_by_account_and_changes_are_seen() -> None:
    directory = SiteDirectory(None)  # type: ignore[arg-type]
    index = AccountSites()
    directory.put(site("g-a", "s-1", "acct-a", 1))
    directory.put(site("g-b", "s-2", "acct-b", 1))
    assert [s.site_id for s in index.on_account(directory, "simulator", "acct-a")] == ["s-1"]
    assert index.on_account(directory, "twilio", "acct-a") == ()
    assert index.on_account(directory, "simulator", None) == ()
    directory.put(site("g-b", "s-2", "acct-a", 2))
    found = index.on_account(directory, "simulator", "acct-a")
    assert {(s.group_id, s.site_id) for s in found} == {("g-a", "s-1"), ("g-b", "s-2")}
    assert index.on_account(directory, "simulator", "acct-b") == ()
