"""A site's settings: every field of the email and SMS setup wizard, validated.

Pure: pydantic models and rules, no I/O. Secrets appear here only sealed (`enc:…`, encrypted by
`shared.secrets`); the model never sees a plaintext password except in the API's input schema.

Settings are layered: a group holds defaults for every field; a site inherits each field until it
overrides it (`overrides`: dotted path → value) and may go back to inheriting. `effective()`
merges the two and validates the result.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from datetime import time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.domain.email_sign_in import SECRET_FIELDS as SIGN_IN_SECRET_FIELDS
from shared.domain.email_sign_in import EmailSignIn
from shared.domain.keywords import (
    DEFAULT_OPT_IN,
    DEFAULT_OPT_OUT,
    default_reply_keywords,
    validate_keyword,
)
from shared.domain.phone import InvalidPhoneNumber, is_e164
from shared.domain.regions import Region
from shared.domain.schedule import Schedule
from shared.domain.sender_id import InvalidSenderId, parse_sender_id, sender_warnings
from shared.domain.weekly import DateClosure, Weekday, WeeklyWindow, overlaps

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
SEALED_PREFIX = "enc:"
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_EMAIL = re.compile(
    r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


class Strict(BaseModel):
    """Settings models refuse unknown fields so a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def parse_hhmm(value: str) -> time:
    """'09:30' → time(9, 30)."""
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def valid_email(address: str) -> bool:
    """A pragmatic check of one email address (local@domain.tld, no display name)."""
    return len(address) <= 254 and bool(_EMAIL.match(address))


class Window(Strict):
    """A weekly window: delivery session or blackout. Immutable: delete and re-add to change."""

    days: list[DayName] = Field(min_length=1, description="Days it opens on, e.g. ['mon','tue'].")
    start: str = Field(description="Local opening time, HH:MM (24-hour).")
    end: str = Field(
        description="Local closing time, HH:MM. Earlier than or equal to start: closes the "
        "next day (overnight)."
    )

    @field_validator("days")
    @classmethod
    def _unique_days(cls, days: list[str]) -> list[str]:
        if len(set(days)) != len(days):
            raise ValueError("a day is listed twice")
        return sorted(days, key=DAY_NAMES.index)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must be a 24-hour time HH:MM, e.g. 09:00")
        return value

    @property
    def id(self) -> str:
        """Stable id from the content: sessions are never edited, so content identifies them."""
        raw = f"{','.join(self.days)}|{self.start}|{self.end}"
        return "w-" + hashlib.sha256(raw.encode()).hexdigest()[:10]

    def to_weekly(self) -> WeeklyWindow:
        """The domain window used by the time maths."""
        return WeeklyWindow(
            frozenset(Weekday(DAY_NAMES.index(d)) for d in self.days),
            parse_hhmm(self.start),
            parse_hhmm(self.end),
        )

    def describe(self) -> str:
        """Human text, e.g. 'Mon–Fri 09:00–12:00'."""
        return self.to_weekly().describe()


class Closure(Strict):
    """Whole local dates the site is closed (holidays), inclusive."""

    start: str = Field(description="First closed date, YYYY-MM-DD.")
    end: str = Field(description="Last closed date, YYYY-MM-DD.")
    label: str = Field(default="", max_length=100)

    @model_validator(mode="after")
    def _ordered(self) -> Closure:
        from datetime import date

        try:
            first, last = date.fromisoformat(self.start), date.fromisoformat(self.end)
        except ValueError as exc:
            raise ValueError("dates must be YYYY-MM-DD") from exc
        if last < first:
            raise ValueError("end is before start")
        return self

    def to_domain(self) -> DateClosure:
        """The domain closure."""
        from datetime import date

        return DateClosure(date.fromisoformat(self.start), date.fromisoformat(self.end))


def _check_no_overlap(windows: list[Window], what: str) -> list[Window]:
    seen: set[str] = set()
    for i, first in enumerate(windows):
        if first.id in seen:
            raise ValueError(f"{what} {first.describe()} is listed twice")
        seen.add(first.id)
        for second in windows[i + 1 :]:
            if overlaps(first.to_weekly(), second.to_weekly()):
                raise ValueError(
                    f"{what}s overlap: {first.describe()} and {second.describe()}; "
                    "delete one or change its times"
                )
    return windows


def _sealed(value: str | None) -> str | None:
    if value is not None and not value.startswith(SEALED_PREFIX):
        raise ValueError("secrets are stored encrypted; a plaintext value reached the model")
    return value


class Profile(Strict):
    """Who the site is and where: name, time zone, region."""

    name: str = Field(default="", max_length=120, description="Site name shown to staff.")
    timezone: str = Field(default="Europe/London", description="IANA time zone of the site.")
    region: Region = Field(default="UK", description="Regulatory region: UK, AU, NZ, US or other.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/London)"
            ) from exc
        return value


class SmtpAccount(Strict):
    """Outgoing mail server."""

    host: str | None = Field(default=None, description="SMTP server host name.")
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="STARTTLS (587), implicit TLS (465) or none (local relay)."
    )
    username: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, description="Sealed (encrypted) password.")

    _sealed = field_validator("password")(_sealed)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not _HOST.match(value):
            raise ValueError("not a valid host name")
        return value


class ImapAccount(Strict):
    """Incoming mail server (the seed's Send/Receive)."""

    enabled: bool = Field(default=False, description="Use IMAP to receive replies and bounces.")
    host: str | None = None
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, description="Sealed (encrypted) password.")
    mailbox: str = Field(default="INBOX", min_length=1, max_length=200)
    sent_folder: str | None = Field(
        default=None,
        max_length=200,
        description="Folder where the provider keeps sent mail (e.g. 'Sent Items'); used to "
        "confirm whether a send interrupted by a crash went out before resending it.",
    )

    _sealed = field_validator("password")(_sealed)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not _HOST.match(value):
            raise ValueError("not a valid host name")
        return value


EmailProviderPreset = Literal["custom", "google_workspace", "microsoft_365"]

PROVIDER_LIMITS: dict[str, dict[str, int | None]] = {
    # Published sending limits of common providers (domain notes §3.4).
    "custom": {"per_minute": None, "per_day": None},
    "google_workspace": {"per_minute": None, "per_day": 2000},
    "microsoft_365": {"per_minute": 30, "per_day": 10000},
}


class EmailSettings(Strict):
    """The email pages of the wizard."""

    enabled: bool = Field(
        default=True, description="False = the seed's 'Disable email sending and receiving'."
    )
    address: str | None = Field(default=None, description="Practice email address (From).")
    display_name: str | None = Field(default=None, max_length=120)
    smtp: SmtpAccount = SmtpAccount()
    imap: ImapAccount = ImapAccount()
    # Issue 19: password or OAuth 2.0 sign-in for SMTP and IMAP (shared.domain.email_sign_in).
    sign_in: EmailSignIn = EmailSignIn()
    transport: Literal["smtp", "graph"] = Field(
        default="smtp",
        description="smtp (SMTP out, IMAP in); graph: Microsoft Graph sendMail, for Microsoft "
        "365 tenants where SMTP AUTH is off (needs the microsoft_365 sign-in method).",
    )
    mode: Literal["automatic", "manual"] = Field(
        default="automatic",
        description="automatic = 'Send all mail immediately' ticked: send inside the sessions; "
        "manual = nothing goes until someone presses send-now.",
    )
    sessions: list[Window] = Field(
        default_factory=lambda: [
            Window(days=["mon", "tue", "wed", "thu", "fri"], start="08:00", end="18:00")
        ],
        description="Days/times the server sends and receives.",
    )
    check_every_minutes: int = Field(
        default=5, ge=1, le=1440, description="Perform regular checks every X minutes."
    )
    preset_times: list[str] = Field(
        default_factory=list,
        max_length=48,
        description="Specific check times of day (HH:MM) instead of the interval (not "
        "recommended).",
    )
    per_minute: float = Field(
        default=3, ge=0, le=1000, description="Emails per minute (the delay); 0 = no delay."
    )
    daily_cap: int | None = Field(default=None, ge=1, le=1_000_000)
    provider_preset: EmailProviderPreset = Field(
        default="custom", description="Applies a provider's published hard limits."
    )
    open_attachments_directly: bool = Field(
        default=False, description="Off (recommended): attachments stay quarantined until released."
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not valid_email(value):
            raise ValueError("not a valid email address")
        return value

    @field_validator("preset_times")
    @classmethod
    def _presets(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _HHMM.match(value):
                raise ValueError(f"{value!r} must be HH:MM")
        if len(set(values)) != len(values):
            raise ValueError("a preset time is listed twice")
        return sorted(values)

    @field_validator("sessions")
    @classmethod
    def _sessions(cls, windows: list[Window]) -> list[Window]:
        return _check_no_overlap(windows, "session")

    def hard_limits(self) -> dict[str, int | None]:
        """Per-minute and per-day caps the gateway must never exceed."""
        preset = PROVIDER_LIMITS[self.provider_preset]
        per_day = [v for v in (preset["per_day"], self.daily_cap) if v is not None]
        return {"per_minute": preset["per_minute"], "per_day": min(per_day) if per_day else None}


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

    _sealed = field_validator("secret", "webhook_secret")(_sealed)

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
            if not _HHMM.match(value):
                raise ValueError("times must be HH:MM")
        if parse_hhmm(self.end) <= parse_hhmm(self.start):
            raise ValueError("end must be after start")
        return self


class SmsSettings(Strict):
    """The SMS pages of the wizard."""

    provider: SmsProvider = SmsProvider()
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
    reply_keywords: dict[str, list[str]] | None = Field(
        default=None,
        description="Answer → keywords that mean it (case-insensitive, letters and digits); "
        "unset = the region's defaults (confirm: YES, Y, OK…; cancel: NO, N…).",
    )

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
        return _check_no_overlap(windows, "session")

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


class SiteSettings(Strict):
    """Everything the wizard sets for one site (effective values, after inheritance)."""

    profile: Profile = Profile()
    email: EmailSettings = EmailSettings()
    sms: SmsSettings = SmsSettings()
    blackouts: list[Window] = Field(
        default_factory=list,
        description="Weekly windows with no sending on any channel (e.g. the backup window).",
    )
    closures: list[Closure] = Field(default_factory=list, description="Closed dates (holidays).")

    @field_validator("blackouts")
    @classmethod
    def _blackouts(cls, windows: list[Window]) -> list[Window]:
        return _check_no_overlap(windows, "blackout")

    def schedule(self, channel: Literal["sms", "email"]) -> Schedule:
        """The channel's sending schedule for the time maths."""
        sessions = self.sms.sessions if channel == "sms" else self.email.sessions
        return Schedule(
            tuple(w.to_weekly() for w in sessions),
            tuple(w.to_weekly() for w in self.blackouts),
            tuple(c.to_domain() for c in self.closures),
            self.profile.timezone,
        )

    def optout_words(self) -> list[str]:
        """Opt-out keywords in force (the region's defaults unless set)."""
        if self.sms.optout_keywords is not None:
            return self.sms.optout_keywords
        return sorted(DEFAULT_OPT_OUT[self.profile.region])

    def optin_words(self) -> list[str]:
        """Opt-in keywords in force."""
        if self.sms.optin_keywords is not None:
            return self.sms.optin_keywords
        return sorted(DEFAULT_OPT_IN[self.profile.region])

    def reply_words(self) -> dict[str, list[str]]:
        """Reply keywords in force: answer → words."""
        if self.sms.reply_keywords is not None:
            return self.sms.reply_keywords
        grouped: dict[str, list[str]] = {}
        for word, answer in default_reply_keywords(self.profile.region).items():
            grouped.setdefault(answer, []).append(word)
        return grouped


# --- Layering: group defaults + site overrides ----------------------------------------------

WHOLE_VALUE_PATHS = frozenset(
    {
        "email.sessions",
        "email.preset_times",
        "sms.sessions",
        "sms.optout_keywords",
        "sms.optin_keywords",
        "sms.reply_keywords",
        "blackouts",
        "closures",
    }
)
"""Lists and maps are inherited or overridden as a whole."""

SITE_ONLY_PATHS = frozenset({"profile.name"})
"""Fields a group cannot default (a site's name is its own)."""

SYSTEM_PATHS = frozenset({"sms.provider.locked"})
"""Fields only Stagger itself sets (a provider test locks the account id)."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings → {dotted path: leaf value}; WHOLE_VALUE_PATHS stay whole."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path not in WHOLE_VALUE_PATHS:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{dotted path: value} → nested dict."""
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        node = nested
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def settable_paths() -> frozenset[str]:
    """Every dotted path a site may override."""
    return frozenset(flatten(SiteSettings().model_dump(mode="json")))


class SettingsError(ValueError):
    """Invalid settings; `errors` maps each dotted field path to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _pydantic_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
        message = error["msg"].removeprefix("Value error, ")
        errors.setdefault(loc or "settings", message)
    return errors


def keyword_conflicts(settings: SiteSettings) -> dict[str, str]:
    """SMS keywords used twice (checked on the effective lists: a region default can clash with
    a custom word), keyed by the field where the second use is."""
    seen: dict[str, str] = {}
    groups: list[tuple[str, str, Iterable[str]]] = [
        ("sms.reply_keywords", f"reply '{answer}'", words)
        for answer, words in settings.reply_words().items()
    ]
    groups += [
        ("sms.optout_keywords", "opt-out", settings.optout_words()),
        ("sms.optin_keywords", "opt-in", settings.optin_words()),
    ]
    for path, owner, words in groups:
        for word in words:
            key = word.upper()
            if key in seen:
                where = (
                    f"twice in {owner}"
                    if seen[key] == owner
                    else (f"by both {seen[key]} and {owner}")
                )
                return {path: f"keyword {word!r} is used {where}"}
            seen[key] = owner
    return {}


def build(data: Mapping[str, Any]) -> SiteSettings:
    """Validate a nested settings dict, raising `SettingsError` with one entry per bad field."""
    try:
        settings = SiteSettings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_pydantic_errors(exc)) from None
    conflicts = keyword_conflicts(settings)
    if conflicts:
        raise SettingsError(conflicts)
    return settings


def effective(defaults: SiteSettings, overrides: Mapping[str, Any]) -> SiteSettings:
    """A site's settings: the group's defaults with the site's overrides applied."""
    unknown = set(overrides) - settable_paths()
    if unknown:
        raise SettingsError({path: "no such setting" for path in sorted(unknown)})
    merged = flatten(defaults.model_dump(mode="json"))
    merged.update(overrides)
    return build(unflatten(merged))


def split_patch(patch: Mapping[str, Any]) -> dict[str, Any]:
    """A nested partial update → {dotted path: new value}, refusing unknown fields."""
    flat = flatten(patch)
    known = settable_paths()
    errors = {}
    for path in flat:
        if path not in known:
            # A nested object given for a whole-value path's parent ("email": {...}) is fine;
            # anything else that does not resolve to a setting is a typo.
            errors[path] = "no such setting"
    if errors:
        raise SettingsError(errors)
    return flat


def diff(old: SiteSettings | None, new: SiteSettings) -> list[tuple[str, Any, Any]]:
    """(path, old value, new value) for every setting that differs."""
    before = flatten(old.model_dump(mode="json")) if old is not None else {}
    after = flatten(new.model_dump(mode="json"))
    return [
        (path, before.get(path), after[path])
        for path in sorted(after)
        if before.get(path) != after[path]
    ]


def is_secret_path(path: str) -> bool:
    """True for fields holding sealed secrets."""
    return path in SECRET_PATHS


SECRET_PATHS = (
    "email.smtp.password",
    "email.imap.password",
    *(f"email.sign_in.{name}" for name in SIGN_IN_SECRET_FIELDS),
    "sms.provider.secret",
    "sms.provider.webhook_secret",
)


def warnings(settings: SiteSettings) -> list[dict[str, str]]:
    """Things that are allowed but probably wrong, each naming its field."""
    found: list[dict[str, str]] = []

    def warn(field: str, message: str) -> None:
        found.append({"field": field, "message": message})

    email = settings.email
    if email.enabled:
        if not email.address:
            warn("email.address", "no practice email address: email cannot be sent")
        if not email.smtp.host:
            warn("email.smtp.host", "no SMTP server: email cannot be sent")
        for path, message in email.sign_in.missing().items():
            warn(path, message)
        if email.transport == "graph" and email.sign_in.method != "microsoft_365":
            warn("email.transport", "the Graph transport needs the microsoft_365 sign-in method")
        if email.preset_times:
            warn("email.preset_times", "preset check times are not recommended; use the interval")
        if email.per_minute == 0:
            warn("email.per_minute", "no delay between emails: providers may block the account")
        limit = email.hard_limits()["per_minute"]
        if limit is not None and (email.per_minute == 0 or email.per_minute > limit):
            warn(
                "email.per_minute",
                f"{email.provider_preset} accepts at most {limit} per minute; sending is "
                "capped there",
            )
        if email.imap.enabled and not email.imap.host:
            warn("email.imap.host", "IMAP is on but no server is set: nothing will be received")
    sms = settings.sms
    if sms.provider.kind != "none":
        if not sms.provider.account_id or not sms.provider.secret:
            warn("sms.provider", "provider credentials are incomplete: SMS cannot be sent")
        if sms.sender_id:
            for message in sender_warnings(parse_sender_id(sms.sender_id), settings.profile.region):
                warn("sms.sender_id", message)
        else:
            warn("sms.sender_id", "no sender ID: the provider's default number is used")
    for blackout in settings.blackouts:
        for channel, sessions in (("email", email.sessions), ("sms", sms.sessions)):
            for session in sessions:
                if overlaps(session.to_weekly(), blackout.to_weekly()):
                    warn(
                        f"{channel}.sessions",
                        f"session {session.describe()} overlaps the blackout "
                        f"{blackout.describe()}: nothing is sent during the blackout",
                    )
    return found


def is_contactable_number(value: str) -> bool:
    """True for a valid E.164 number."""
    return is_e164(value)
