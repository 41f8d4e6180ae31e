"""The wizard offers the SMS simulator only where the deployment enables it."""

from __future__ import annotations

from services.config.console.form_parsing import parse_step
from services.config.console.forms import BY_NAME, offered


def kinds(simulator_enabled: bool) -> list[str]:
    step = offered(BY_NAME["provider"], simulator_enabled=simulator_enabled)
    field = next(f for f in step.fields if f.path == "sms.provider.kind")
    return [value for value, _ in field.options]


def test_the_simulator_is_listed_only_when_enabled() -> None:
    providers = ["twilio", "clicksend", "vonage", "messagemedia", "kudosity", "esendex", "tnz"]
    assert kinds(True) == ["none", "simulator", *providers]
    assert kinds(False) == ["none", *providers]


def test_a_submitted_simulator_choice_is_refused_when_disabled() -> None:
    step = offered(BY_NAME["provider"], simulator_enabled=False)
    _, _, errors = parse_step(step, {"sms.provider.kind": "simulator"})
    assert errors == {"sms.provider.kind": "choose one of the options"}


def test_the_provider_screen_asks_for_the_webhook_secret_as_a_secret() -> None:
    fields = {f.path: f for f in BY_NAME["provider"].fields}
    assert fields["sms.provider.webhook_secret"].kind == "secret"


def test_the_provider_screen_offers_a_secondary_account_for_failover() -> None:
    fields = {f.path: f for f in BY_NAME["provider"].fields}
    assert fields["sms.secondary_provider.secret"].kind == "secret"
    assert fields["sms.secondary_provider.webhook_secret"].kind == "secret"
    assert "sms.failover_after_seconds" in fields
    step = offered(BY_NAME["provider"], simulator_enabled=False)
    kind = next(f for f in step.fields if f.path == "sms.secondary_provider.kind")
    assert "simulator" not in [value for value, _ in kind.options]
    _, _, errors = parse_step(step, {"sms.secondary_provider.kind": "simulator"})
    assert errors == {"sms.secondary_provider.kind": "choose one of the options"}
