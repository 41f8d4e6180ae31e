"""Which secrets may sign a simulator account's webhooks (pure rules of `trust`)."""

from __future__ import annotations

from services.sms_gateway.adapters.account_sites import AccountSites
from services.sms_gateway.adapters.trust_store import fingerprint, simulator_secrets
from shared.domain.site_settings import SiteSettings
from shared.secrets import SecretBox, generate_key
from shared.sites import Site, SiteDirectory

BOX = SecretBox([generate_key().encode()])


def site(site_id: str, account: str, webhook_secret: str | None, kind: str = "simulator") -> Site:
    provider = {
        "kind": kind,
        "account_id": account,
        "secret": BOX.seal("api-key"),
        "webhook_secret": BOX.seal(webhook_secret) if webhook_secret else None,
    }
    settings = SiteSettings.model_validate({"sms": {"provider": provider}})
    return Site("g-1", site_id, settings, 1)


def test_only_the_named_accounts_sites_count() -> None:
    directory = SiteDirectory(None)  # type: ignore[arg-type]
    for s in (
        site("a1", "acct-a", "wa"),
        site("b1", "acct-b", "wb"),
        site("t1", "acct-a", None, "twilio"),
    ):
        directory.put(s)
    on_account = AccountSites().sites(directory, "simulator", "acct-a")
    assert [s.site_id for s in on_account] == ["a1"]
    assert simulator_secrets(BOX, on_account, "acct-a") == ["wa"]


def test_any_site_of_a_shared_account_verifies() -> None:
    sites = [site("a1", "acct-a", "old"), site("a2", "acct-a", "new"), site("a3", "acct-a", None)]
    assert simulator_secrets(BOX, sites, "acct-a") == ["new", "old"]


def test_the_development_secret_only_for_the_default_account_without_a_secret_of_its_own() -> None:
    assert simulator_secrets(BOX, [site("d1", "sim-default", None)], "sim-default") == [
        "sim-dev-webhook-secret"
    ]
    assert simulator_secrets(BOX, [site("d1", "sim-default", "own")], "sim-default") == ["own"]
    assert simulator_secrets(BOX, [site("x1", "acct-x", None)], "acct-x") == []
    assert simulator_secrets(BOX, [], "sim-default") == []


def test_a_tested_fingerprint_changes_with_every_part_of_the_credentials() -> None:
    base = fingerprint("twilio", None, "AC1", "token")
    others = {
        fingerprint("twilio", "https://elsewhere.example", "AC1", "token"),
        fingerprint("twilio", None, "AC2", "token"),
        fingerprint("twilio", None, "AC1", "other"),
        fingerprint("simulator", None, "AC1", "token"),
    }
    assert base not in others and len(others) == 4


def test_each_sealed_secret_is_opened_once_however_many_webhooks_arrive() -> None:
    box = SecretBox([generate_key().encode()])
    sealed = [box.seal(f"secret-{i}") for i in range(3)]
    provider = {"kind": "simulator", "account_id": "acct-c", "secret": box.seal("api-key")}
    sites = [
        Site(
            "g-1",
            f"c{i}",
            SiteSettings.model_validate({"sms": {"provider": {**provider, "webhook_secret": s}}}),
            1,
        )
        for i, s in enumerate(sealed)
    ]
    opened: list[str] = []
    real_open = box.open

    def counting_open(value: str) -> str:
        opened.append(value)
        return real_open(value)

    box.open = counting_open  # type: ignore[method-assign]
    for _ in range(50):
        assert simulator_secrets(box, sites, "acct-c") == ["secret-0", "secret-1", "secret-2"]
    assert sorted(opened) == sorted(sealed)
    # A changed secret is a new sealed value: opened (once) the next time.
    sites[0] = Site(
        "g-1",
        "c0",
        SiteSettings.model_validate(
            {"sms": {"provider": {**provider, "webhook_secret": box.seal("rotated")}}}
        ),
        2,
    )
    assert simulator_secrets(box, sites, "acct-c") == ["rotated", "secret-1", "secret-2"]
    assert len(opened) == 4
