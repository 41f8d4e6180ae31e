"""Which fields of the wizard's provider screen each SMS provider needs, and what they are
called there (facts: docs/sms-gateway.md, "Provider adapters" and the provider matrix).

The screen shows only the chosen provider's fields, labelled the provider's way (Twilio's
"Account SID", ClickSend's "Username"…). A field left off is not submitted, so its saved value
stays as it was (`forms.parse_step` leaves missing fields unchanged).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.config.console.forms import Field, Step
from shared.domain.numbers import for_people

KIND = "sms.provider.kind"
ACCOUNT = "sms.provider.account_id"
SECRET = "sms.provider.secret"
WEBHOOK = "sms.provider.webhook_secret"
SOURCES = "sms.provider.webhook_sources"
BASE_URL = "sms.provider.base_url"
RATE = "sms.provider.rate_per_second"
PER_PART = "sms.provider.credits_per_segment"
SENDER = "sms.sender_id"
LOW = "sms.low_credit_threshold"
TOPUP = "sms.auto_topup_amount"

PATH_SECRET = (
    "A random string of 24 or more characters: it becomes part of the webhook addresses "
    "you give {name} for delivery receipts and replies ({name} does not sign them)."
)
PRICED = "Price of one message part in the account's currency (turns the balance into messages)."

_COMMON = (ACCOUNT, SECRET, BASE_URL, RATE)
NEEDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "simulator": (*_COMMON, WEBHOOK, PER_PART, SENDER, LOW, TOPUP),
    # Twilio signs its webhooks with the auth token: no webhook secret. No top-up call.
    "twilio": (*_COMMON, PER_PART, SENDER, LOW),
    # Unsigned webhooks (Vonage's are signed, but also path-secured): a secret address and an
    # optional allow-list of where they come from.
    "clicksend": (*_COMMON, WEBHOOK, SOURCES, PER_PART, SENDER, LOW),
    "vonage": (*_COMMON, WEBHOOK, SOURCES, PER_PART, SENDER, LOW),
    "messagemedia": (*_COMMON, WEBHOOK, SOURCES, PER_PART, SENDER, LOW),
    "kudosity": (*_COMMON, WEBHOOK, SOURCES, PER_PART, SENDER, LOW),
    "esendex": (*_COMMON, WEBHOOK, SOURCES, PER_PART, SENDER, LOW),
    # Post-paid (invoiced): no balance to price or warn about.
    "tnz": (*_COMMON, WEBHOOK, SOURCES, SENDER),
}
"""Provider kind → the paths its screen shows besides the kind itself."""

LABELS: dict[str, dict[str, tuple[str, str]]] = {
    # The simulator keeps the seed's generic names ("Practice ID", "Password").
    "simulator": {
        WEBHOOK: ("Webhook secret", "The key the simulator signs this account's webhooks with."),
    },
    "twilio": {
        ACCOUNT: ("Account SID", "Starts with AC; greyed out once a test succeeds."),
        SECRET: ("Auth Token", "Twilio also signs its webhooks with it."),
        PER_PART: ("Price per message part", PRICED),
    },
    "clicksend": {
        ACCOUNT: ("Username", "Greyed out once a test succeeds."),
        SECRET: ("API key", ""),
        WEBHOOK: ("Webhook secret", PATH_SECRET.format(name="ClickSend")),
        PER_PART: ("Price per message part", PRICED),
    },
    "vonage": {
        ACCOUNT: ("API key", "Greyed out once a test succeeds."),
        SECRET: ("API secret", ""),
        WEBHOOK: (
            "Signature secret",
            "The account's signature secret (HMAC-SHA256); it is also part of the webhook "
            "addresses you give Vonage.",
        ),
        PER_PART: ("Price per message part (EUR)", PRICED),
    },
    "messagemedia": {
        ACCOUNT: ("API key", "Greyed out once a test succeeds."),
        SECRET: ("API secret", ""),
        WEBHOOK: ("Webhook secret", PATH_SECRET.format(name="MessageMedia")),
    },
    "kudosity": {
        ACCOUNT: ("API key", "Greyed out once a test succeeds."),
        SECRET: ("API secret", ""),
        WEBHOOK: ("Webhook secret", PATH_SECRET.format(name="Kudosity")),
        PER_PART: ("Price per message part", PRICED),
    },
    "esendex": {
        ACCOUNT: ("Account reference (EX…)", "Greyed out once a test succeeds."),
        SECRET: ("Login and API token", "Typed as login:token."),
        WEBHOOK: ("Webhook secret", PATH_SECRET.format(name="Esendex")),
    },
    "tnz": {
        ACCOUNT: ("TNZ sender (API login)", "Greyed out once a test succeeds."),
        SECRET: ("Auth Token", ""),
        WEBHOOK: ("Webhook secret", PATH_SECRET.format(name="TNZ")),
        SENDER: (
            "Short code",
            "Your approved New Zealand short code: NZ networks block mobile numbers as sender.",
        ),
    },
}
"""Provider kind → path → (label, help) where the provider names a field its own way."""


def for_provider(step: Step, kind: str | None) -> Step:
    """The provider screen showing only `kind`'s fields (all of them for an unknown kind)."""
    needs = NEEDS.get(kind or "none")
    if needs is None:
        return step
    labels = LABELS.get(kind or "none", {})
    fields: list[Field] = []
    for f in step.fields:
        if f.path != KIND and f.path not in needs:
            continue
        label, help_text = labels.get(f.path, (f.label, f.help))
        fields.append(replace(f, label=label, help=help_text))
    return replace(step, fields=tuple(fields))


def balance_text(result: dict[str, Any]) -> str:
    """A successful provider test's balance as the wizard shows it: "998 credits",
    "5.00 USD", or that a post-paid account has none."""
    if result.get("postpaid"):
        return "post-paid (invoiced by the provider)"
    amount = float(result.get("balance") or 0)
    if result.get("unit") == "money":
        return f"{amount:,.2f} {result.get('currency') or ''}".rstrip()
    return f"{for_people(result.get('balance'))} {result.get('unit') or 'credits'}"
