"""The SMS section of a site's settings: provider account, sender ID, sessions, keywords.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from shared.domain.keywords import validate_keyword
from shared.domain.phone import InvalidPhoneNumber
from shared.domain.sender_id import InvalidSenderId, parse_sender_id
from shared.domain.settings_fields import HHMM, Strict, parse_hhmm, sealed
from shared.domain.settings_windows import Window, check_no_overlap

SmsProviderKind = Literal[
    "none",
    "simulator",
    "twilio",
    "clicksend",
    "vonage",
    "messagemedia",
    "kudosity",
    "esendex",
    "tnz",
]


class SmsProvider(Strict):
    """The SMS provider account."""

    kind: SmsProviderKind = Field(default="none", description="'none' disables SMS.")
    account_id: str | None = Field(
        default=None,
        max_length=100,
        description="Practice ID / account SID / simulator account; locked after a "
        "successful test.",
    )
    secret: str | None = Field(default=None, description="Sealed password / auth token / API key.")
    webhook_secret: str | None = Field(
        default=None,
        description="Sealed key the provider signs this account's webhooks with (the "
        "simulator's per-account webhook secret; Twilio signs with the auth token instead).",
    )
    base_url: str | None = Field(default=None, max_length=300, description="API base URL.")
    webhook_sources: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Providers that do not sign webhooks: the addresses or networks (CIDR) "
        "their webhooks may come from; empty allows any (the path's secret still applies).",
    )
    rate_per_second: float = Field(
        default=1.0, gt=0, le=1000, description="The account's maximum send rate (hard limit)."
    )
    credits_per_segment: float = Field(default=1.0, ge=0, le=1000)
    locked: bool = Field(
        default=False,
        description="Set by a successful provider test: the account id can no longer be changed "
        "without unlocking (other features depend on it, as in the seed).",
    )

    _sealed = field_validator("secret", "webhook_secret")(sealed)

    @field_validator("webhook_sources")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from exc
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/$.?#].[^\s]*$", value):
            raise ValueError("must be an http(s) URL")
        return value


class QuietHoursSetting(Strict):
    """Recipient-local hours when SMS may be sent."""

    start: str = Field(default="08:00", description="Earliest local time at the recipient.")
    end: str = Field(default="21:00", description="Latest local time at the recipient.")

    @model_validator(mode="after")
    def _ordered(self) -> QuietHoursSetting:
        for value in (self.start, self.end):
            if not HHMM.match(value):
                raise ValueError("times must be HH:MM")
        if parse_hhmm(self.end) <= parse_hhmm(self.start):
            raise ValueError("end must be after start")
        return self


class SmsSettings(Strict):
    """The SMS pages of the wizard."""

    provider: SmsProvider = SmsProvider()
    secondary_provider: SmsProvider = Field(
        default_factory=SmsProvider,
        description="Another provider account sending continues on while the primary is held "
        "(no credit, refused credentials, an outage longer than failover_after_seconds); "
        "'none' = no failover.",
    )
    failover_after_seconds: float = Field(
        default=300,
        ge=0,
        le=86400,
        description="How long the primary may be unavailable (5xx, no answer) before its "
        "sending moves to the secondary account.",
    )
    sender_id: str | None = Field(
        default=None, description="Alphanumeric (≤ 11 characters) or an E.164 number."
    )
    mode: Literal["immediate", "staggered"] = Field(
        default="staggered", description="immediate = 'Send all SMS when the list is generated'."
    )
    sessions: list[Window] = Field(
        default_factory=lambda: [
            Window(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00")
        ],
        description="Delivery times for staggered sending.",
    )
    every_minutes: float = Field(
        default=3, ge=1 / 60, le=1440, description="A message should be sent every X minutes."
    )
    warn_after_days: float = Field(
        default=5, gt=0, le=365, description="Warn if the staggered sending takes longer."
    )
    low_credit_threshold: int = Field(default=100, ge=0)
    auto_topup_amount: int = Field(default=0, ge=0, description="0 = no automatic top-up.")
    quiet_hours: QuietHoursSetting = QuietHoursSetting()
    optout_keywords: list[str] | None = Field(
        default=None, description="Opt-out words; unset = the region's defaults."
    )
    optin_keywords: list[str] | None = Field(
        default=None, description="Opt-back-in words; unset = the region's defaults."
    )
    stop_confirmation: str | None = Field(
        default=None,
        max_length=320,
        description="Sent once to a number that replied an opt-out word; unset = the "
        "region's text where the region expects one (US), else none; empty = never. "
        "{site} becomes the site's name.",
    )
    help_reply: str | None = Field(
        default=None,
        max_length=320,
        description="Sent to a number that replied a help word (HELP, INFO); unset = the "
        "region's text where the region expects one (US), else none; empty = never.",
    )
    reply_keywords: dict[str, list[str]] | None = Field(
        default=None,
        description="Answer → keywords that mean it (case-insensitive, letters and digits); "
        "unset = the region's defaults (confirm: YES, Y, OK…; cancel: NO, N…).",
    )

    @field_validator("secondary_provider")
    @classmethod
    def _another_account(cls, value: SmsProvider, info: ValidationInfo) -> SmsProvider:
        if value.kind == "none":
            return value
        primary = info.data.get("provider")
        if not isinstance(primary, SmsProvider):
            return value  # the primary is invalid: its own error names it
        if (primary.kind, primary.account_id, primary.base_url) == (
            value.kind,
            value.account_id,
            value.base_url,
        ):
            raise ValueError("must be another account than the primary provider")
        return value

    @field_validator("sender_id")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return parse_sender_id(value).value
        except (InvalidSenderId, InvalidPhoneNumber) as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("sessions")
    @classmethod
    def _sessions(cls, windows: list[Window]) -> list[Window]:
        return check_no_overlap(windows, "session")

    @field_validator("optout_keywords", "optin_keywords")
    @classmethod
    def _words(cls, words: list[str] | None) -> list[str] | None:
        if words is None:
            return None
        return [validate_keyword(w) for w in words]

    @field_validator("reply_keywords")
    @classmethod
    def _replies(cls, mapping: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if mapping is None:
            return None
        result = {}
        for answer, words in mapping.items():
            if not re.match(r"^[a-z][a-z0-9_]{0,30}$", answer):
                raise ValueError(f"answer name {answer!r} must be lowercase letters/digits/_")
            result[answer] = [validate_keyword(w) for w in words]
        return result
