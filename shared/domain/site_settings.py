"""A site's settings: every field of the email and SMS setup wizard, validated.

Pure: pydantic models and rules, no I/O. Secrets appear here only sealed (`enc:…`, encrypted by
`shared.secrets`); the model never sees a plaintext password except in the API's input schema.

Settings are layered: a group holds defaults for every field; a site inherits each field until it
overrides it (`overrides`: dotted path → value) and may go back to inheriting. `effective()`
merges the two and validates the result.

Each section lives in its own module (`settings_profile`, `settings_email`, `settings_sms`,
`settings_windows`, shared pieces in `settings_fields`); this module holds `SiteSettings`, the
layering, the secret paths and the warnings, and re-exports the sections' names so callers keep
importing everything from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from shared.domain.auto_replies import auto_reply_text
from shared.domain.email_sign_in import SECRET_FIELDS as SIGN_IN_SECRET_FIELDS
from shared.domain.keywords import DEFAULT_OPT_IN, DEFAULT_OPT_OUT, default_reply_keywords
from shared.domain.phone import is_e164
from shared.domain.schedule import Schedule
from shared.domain.sender_id import parse_sender_id, sender_warnings
from shared.domain.settings_consent import ConsentSettings
from shared.domain.settings_email import (
    PROVIDER_LIMITS,
    EmailProviderPreset,
    EmailSettings,
    ImapAccount,
    SmtpAccount,
)
from shared.domain.settings_fields import (
    DAY_NAMES,
    SEALED_PREFIX,
    DayName,
    Strict,
    parse_hhmm,
    valid_email,
)
from shared.domain.settings_profile import Profile
from shared.domain.settings_sms import QuietHoursSetting, SmsProvider, SmsProviderKind, SmsSettings
from shared.domain.settings_windows import Closure, Window, check_no_overlap
from shared.domain.weekly import overlaps

__all__ = [
    "DAY_NAMES",
    "GROUP_ONLY_PATHS",
    "PROVIDER_LIMITS",
    "SEALED_PREFIX",
    "SECRET_PATHS",
    "SITE_ONLY_PATHS",
    "SYSTEM_PATHS",
    "WHOLE_VALUE_PATHS",
    "Closure",
    "ConsentSettings",
    "DayName",
    "EmailProviderPreset",
    "EmailSettings",
    "ImapAccount",
    "Profile",
    "QuietHoursSetting",
    "SettingsError",
    "SiteSettings",
    "SmsProvider",
    "SmsProviderKind",
    "SmsSettings",
    "SmtpAccount",
    "Strict",
    "Window",
    "build",
    "diff",
    "effective",
    "flatten",
    "is_contactable_number",
    "is_secret_path",
    "keyword_conflicts",
    "parse_hhmm",
    "settable_paths",
    "split_patch",
    "unflatten",
    "valid_email",
    "warnings",
]


class SiteSettings(Strict):
    """Everything the wizard sets for one site (effective values, after inheritance)."""

    profile: Profile = Profile()
    email: EmailSettings = EmailSettings()
    sms: SmsSettings = SmsSettings()
    consent: ConsentSettings = ConsentSettings()
    blackouts: list[Window] = Field(
        default_factory=list,
        description="Weekly windows with no sending on any channel (e.g. the backup window).",
    )
    closures: list[Closure] = Field(default_factory=list, description="Closed dates (holidays).")

    @field_validator("blackouts")
    @classmethod
    def _blackouts(cls, windows: list[Window]) -> list[Window]:
        return check_no_overlap(windows, "blackout")

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

    def auto_reply(self, kind: str) -> str | None:
        """The STOP confirmation (`optout`) or HELP answer (`help`) to send, or None."""
        configured = self.sms.stop_confirmation if kind == "optout" else self.sms.help_reply
        return auto_reply_text(kind, self.profile.region, configured, self.profile.name)

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
        "consent.categories",
        "consent.optout_phrases",
    }
)
"""Lists and maps are inherited or overridden as a whole."""

SITE_ONLY_PATHS = frozenset({"profile.name"})
"""Fields a group cannot default (a site's name is its own)."""

SYSTEM_PATHS = frozenset({"sms.provider.locked", "sms.secondary_provider.locked"})
"""Fields only Stagger itself sets (a provider test locks the account id; the secondary
account is never locked: the provider test tests the primary)."""

GROUP_ONLY_PATHS = frozenset({"consent.categories", "consent.optout_phrases"})
"""Fields a site cannot override: opt-outs span the group, so its categories must too."""


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
    "sms.secondary_provider.secret",
    "sms.secondary_provider.webhook_secret",
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
    secondary = sms.secondary_provider
    if secondary.kind != "none":
        if sms.provider.kind == "none":
            warn("sms.secondary_provider", "no primary SMS provider: the secondary is not used")
        elif not secondary.account_id or not secondary.secret:
            warn("sms.secondary_provider", "secondary provider credentials are incomplete")
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
