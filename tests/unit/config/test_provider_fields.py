"""The wizard's provider screen shows each provider just the fields it needs, named its way,
and a provider test's balance in the provider's unit."""

from __future__ import annotations

import pytest

from services.config.console.form_parsing import parse_step
from services.config.console.forms import BY_NAME
from services.config.console.provider_fields import NEEDS, balance_text, for_provider
from shared.domain.settings_sms import SmsProviderKind


def shown(kind: str) -> dict[str, str]:
    """path → label of the provider screen for `kind`."""
    return {f.path: f.label for f in for_provider(BY_NAME["provider"], kind).fields}


def test_every_provider_kind_has_its_field_list() -> None:
    assert set(NEEDS) == set(SmsProviderKind.__args__)  # type: ignore[attr-defined]
    every = {f.path for f in BY_NAME["provider"].fields}
    assert all(set(paths) <= every for paths in NEEDS.values())


def test_none_shows_only_the_choice() -> None:
    assert list(shown("none")) == ["sms.provider.kind"]


@pytest.mark.parametrize(
    ("kind", "account", "secret"),
    [
        ("twilio", "Account SID", "Auth Token"),
        ("clicksend", "Username", "API key"),
        ("vonage", "API key", "API secret"),
        ("messagemedia", "API key", "API secret"),
        ("kudosity", "API key", "API secret"),
        ("esendex", "Account reference (EX…)", "Login and API token"),
        ("tnz", "TNZ sender (API login)", "Auth Token"),
    ],
)
def test_credentials_are_named_the_providers_way(kind: str, account: str, secret: str) -> None:
    fields = shown(kind)
    assert (fields["sms.provider.account_id"], fields["sms.provider.secret"]) == (account, secret)


def test_twilio_signs_with_its_token_so_asks_for_no_webhook_secret() -> None:
    assert "sms.provider.webhook_secret" not in shown("twilio")
    for kind in ("clicksend", "vonage", "messagemedia", "kudosity", "esendex", "tnz"):
        assert "sms.provider.webhook_secret" in shown(kind), kind


def test_only_the_simulator_offers_automatic_top_up() -> None:
    offering = [k for k in NEEDS if "sms.auto_topup_amount" in shown(k)]
    assert offering == ["simulator"]


def test_post_paid_tnz_asks_for_a_short_code_and_no_balance_settings() -> None:
    fields = shown("tnz")
    assert fields["sms.sender_id"] == "Short code"
    assert "sms.low_credit_threshold" not in fields
    assert "sms.provider.credits_per_segment" not in fields


def test_balance_is_shown_in_the_providers_unit() -> None:
    assert balance_text({"balance": 998.0, "unit": "credits"}) == "998 credits"
    assert balance_text({"balance": 5.0, "unit": "money", "currency": "USD"}) == "5.00 USD"
    assert balance_text({"balance": 1234.5, "unit": "money", "currency": "EUR"}) == "1,234.50 EUR"
    postpaid = {"balance": 1e6, "unit": "money", "currency": "NZD", "postpaid": True}
    assert "post-paid" in balance_text(postpaid)


def test_only_path_secured_providers_offer_a_source_allow_list() -> None:
    offering = [k for k in NEEDS if "sms.provider.webhook_sources" in shown(k)]
    assert offering == ["clicksend", "vonage", "messagemedia", "kudosity", "esendex", "tnz"]


def test_the_allow_list_is_read_as_a_list() -> None:
    step = for_provider(BY_NAME["provider"], "clicksend")
    values, _, errors = parse_step(
        step, {"sms.provider.webhook_sources": "203.0.113.0/24, 198.51.100.7"}
    )
    assert errors == {}
    assert values["sms.provider.webhook_sources"] == ["203.0.113.0/24", "198.51.100.7"]
