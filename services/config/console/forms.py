"""The wizard's screens and fields (`form_parsing` turns submitted forms into settings values).

Field names are the settings' dotted paths (`sms.every_minutes`), so a `SettingsError` naming a
path lands next to the field of that name. Parsing only converts types; every rule is checked
by the settings model itself (`aggregates.decide_site_change`), never here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from services.config.console.email_sign_in import FIELD_SPECS as SIGN_IN_FIELD_SPECS
from shared.domain.site_settings import DAY_NAMES

DAY_LABELS = dict(zip(DAY_NAMES, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True))


@dataclass(frozen=True)
class Field:
    """One form control bound to one setting."""

    path: str
    label: str
    kind: str  # text, email, int, float, bool, inverted, select, radio, secret, times, list,
    # windows
    help: str = ""
    optional: bool = False  # empty text means "not set" (None)
    options: tuple[tuple[str, str], ...] = ()
    minimum: float | None = None
    step: str | None = None

    @property
    def id(self) -> str:
        """The control's HTML id."""
        return "f-" + re.sub(r"[^a-z0-9]+", "-", self.path.lower())


@dataclass(frozen=True)
class Step:
    """One screen of the wizard."""

    name: str
    title: str
    fields: tuple[Field, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def owns(self, path: str) -> bool:
        """True if an error at `path` belongs to a field of this screen."""
        return any(_related(f.path, path) for f in self.fields)


def _related(field_path: str, error_path: str) -> bool:
    return (
        error_path == field_path
        or error_path.startswith(field_path + ".")
        or field_path.startswith(error_path + ".")
    )


SECURITY = (("starttls", "STARTTLS"), ("tls", "TLS (implicit)"), ("none", "None (local relay)"))
PROVIDER_OPTIONS = (
    ("none", "None"),
    ("simulator", "Stagger SMS simulator"),
    ("twilio", "Twilio"),
    ("clicksend", "ClickSend"),
    ("vonage", "Vonage (SMS API)"),
    ("messagemedia", "MessageMedia (Sinch)"),
    ("kudosity", "Kudosity / Burst SMS (Transmit SMS)"),
    ("esendex", "Esendex"),
    ("tnz", "TNZ (New Zealand short codes)"),
)

STEPS: tuple[Step, ...] = (
    Step(
        "welcome",
        "Welcome to the setup wizard",
        notes=(
            "This wizard sets how this site sends and receives patient email and SMS.",
            "Complete the whole wizard and press Finish to save: nothing is saved before then.",
        ),
    ),
    Step(
        "account",
        "Account details",
        (
            Field(
                "email.enabled",
                "Disable email sending and receiving",
                "inverted",
                "Tick this if the site needs only the later screens (for example SMS).",
            ),
            Field("email.address", "Practice email address", "email", optional=True),
            Field(
                "email.display_name",
                "Display name",
                "text",
                "Shown to patients as the sender, e.g. the practice name.",
                optional=True,
            ),
            Field(
                "email.provider_preset",
                "Email provider",
                "select",
                "A provider's published sending limits are applied automatically.",
                options=(
                    ("custom", "Other"),
                    ("google_workspace", "Google Workspace / Gmail"),
                    ("microsoft_365", "Microsoft 365"),
                ),
            ),
            Field("email.smtp.host", "Outgoing mail server (SMTP)", "text", optional=True),
            Field("email.smtp.port", "SMTP port", "int", minimum=1),
            Field("email.smtp.security", "SMTP security", "select", options=SECURITY),
            Field("email.smtp.username", "User name", "text", optional=True),
            Field("email.smtp.password", "Password", "secret"),
            Field(
                "email.imap.enabled",
                "Use IMAP to receive replies and bounces",
                "bool",
                "Unticked, nothing is received.",
            ),
            Field("email.imap.host", "Incoming mail server (IMAP)", "text", optional=True),
            Field("email.imap.port", "IMAP port", "int", "Usually 993.", minimum=1),
            Field(
                "email.imap.security",
                "IMAP security",
                "select",
                options=(("tls", "TLS (implicit)"), ("starttls", "STARTTLS"), ("none", "None")),
            ),
            Field("email.imap.username", "IMAP user name", "text", optional=True),
            Field("email.imap.password", "IMAP password", "secret"),
            Field("email.imap.mailbox", "Mailbox", "text"),
            Field(
                "email.imap.sent_folder",
                "Sent folder",
                "text",
                "Where the provider keeps sent mail, e.g. 'Sent Items'.",
                optional=True,
            ),
            # Issue 19: "Sign-in method" (services.config.console.email_sign_in).
            *(Field(**spec) for spec in SIGN_IN_FIELD_SPECS),
        ),
    ),
    Step(
        "schedule",
        "Scheduled send and receive",
        (
            Field(
                "email.mode",
                "Send all mail immediately (recommended)",
                "checkmode",
                "Ticked: email goes automatically during the sessions below. Unticked: nothing "
                "is sent until someone presses Send now.",
            ),
            Field(
                "email.sessions",
                "Send and receive sessions",
                "windows",
                "Days and times the server sends and receives. Sessions cannot be edited: "
                "delete one and add it again to change it.",
            ),
            Field(
                "email.check_every_minutes",
                "Perform regular checks every X minutes",
                "int",
                minimum=1,
            ),
            Field(
                "email.preset_times",
                "Preset check times (not recommended)",
                "times",
                "Specific times of day, HH:MM separated by commas, instead of the interval. "
                "Not recommended: use the interval above.",
            ),
            Field(
                "blackouts",
                "Backup window (nothing is sent)",
                "windows",
                "Weekly times when no email or SMS is sent, such as the network backup.",
            ),
        ),
        notes=(
            "IMPORTANT: ensure that scheduled network backup times don't coincide with these "
            "sessions. Enter the backup window below and Stagger sends nothing during it.",
        ),
    ),
    Step(
        "delay",
        "Add a delay between sending each email",
        (
            Field(
                "email.per_minute",
                "Emails per minute",
                "float",
                "3 per minute (120 per hour) or 8 per minute (480 per hour) are common choices "
                "that keep within most providers' rules; 0 means no delay (not advised). "
                "Check your provider's limits with your IT.",
                minimum=0,
                step="any",
            ),
            Field(
                "email.daily_cap",
                "At most this many emails a day",
                "int",
                "Leave empty for no daily cap.",
                optional=True,
                minimum=1,
            ),
        ),
        notes=(
            "Providers block accounts that send too much too fast, so a delay is encouraged.",
            "Manual sending overrides the delay: Send now sends everything queued at once, with "
            "no staggered delay (opt-outs, provider caps and credits still apply).",
        ),
    ),
    Step(
        "attachments",
        "Open email attachments directly",
        (
            Field(
                "email.open_attachments_directly",
                "Open email attachments directly",
                "bool",
                "Off by default for protection (recommended): attachments stay quarantined "
                "until a member of staff releases them.",
            ),
        ),
        notes=(
            "Turn this on only if your anti-virus program scans attachments before they are "
            "opened. Otherwise you risk a virus infection. Keep the anti-virus program updated, "
            "or it may fail to recognise new viruses.",
        ),
    ),
    Step(
        "provider",
        "SMS provider",
        (
            Field(
                "sms.provider.kind",
                "SMS provider",
                "select",
                "Select None if this site does not send SMS.",
                options=PROVIDER_OPTIONS,
            ),
            Field(
                "sms.provider.account_id",
                "Practice ID (account)",
                "text",
                "Greyed out once a test succeeds: other features depend on it.",
                optional=True,
            ),
            Field("sms.provider.secret", "Password (API key or auth token)", "secret"),
            Field(
                "sms.provider.webhook_secret",
                "Webhook secret",
                "secret",
                "Simulator: the key it signs this account's receipts and replies with. "
                "ClickSend (its webhooks are not signed): a random string of 24 or more "
                "characters that becomes part of the webhook address you give ClickSend. "
                "Twilio signs with the auth token: leave empty.",
            ),
            Field(
                "sms.provider.webhook_sources",
                "Webhook sources (optional)",
                "list",
                "Addresses or networks (CIDR) the provider's webhooks come from, separated by "
                "commas; empty accepts any (the secret webhook address still applies).",
            ),
            Field(
                "sms.provider.base_url",
                "Provider address (URL)",
                "text",
                "Leave empty for the provider's usual address.",
                optional=True,
            ),
            Field(
                "sms.provider.rate_per_second",
                "Most messages per second the account accepts",
                "float",
                minimum=0,
                step="any",
            ),
            Field(
                "sms.provider.credits_per_segment",
                "Credits per message part",
                "float",
                minimum=0,
                step="any",
            ),
            Field(
                "sms.secondary_provider.kind",
                "Secondary SMS provider (failover)",
                "select",
                "Another account sending continues on while the first one cannot send (no "
                "credit, refused password, an outage). None: no failover.",
                options=PROVIDER_OPTIONS,
            ),
            Field("sms.secondary_provider.account_id", "Secondary account", "text", optional=True),
            Field("sms.secondary_provider.secret", "Secondary account password", "secret"),
            Field("sms.secondary_provider.webhook_secret", "Secondary webhook secret", "secret"),
            Field(
                "sms.secondary_provider.base_url", "Secondary provider URL", "text", optional=True
            ),
            Field(
                "sms.secondary_provider.rate_per_second",
                "Most messages per second the secondary account accepts",
                "float",
                minimum=0,
            ),
            Field(
                "sms.failover_after_seconds",
                "Fail over after an outage of (seconds)",
                "float",
                "How long the first account may be unreachable before sending moves to the "
                "secondary. No credit or a refused password moves it at once.",
                minimum=0,
            ),
            Field(
                "sms.sender_id",
                "Sender ID",
                "text",
                "Up to 11 letters and digits, or a phone number in international form.",
                optional=True,
            ),
            Field(
                "sms.low_credit_threshold",
                "Warn when credits fall below",
                "int",
                minimum=0,
            ),
            Field(
                "sms.auto_topup_amount",
                "Automatic top-up amount",
                "int",
                "0 means no automatic top-up.",
                minimum=0,
            ),
        ),
        notes=("Test confirms the account works and shows the credits left on it.",),
    ),
    Step(
        "sms",
        "SMS sending",
        (
            Field(
                "sms.mode",
                "How SMS are sent",
                "radio",
                options=(
                    (
                        "immediate",
                        "Send all SMS when the list is generated (other options are greyed out)",
                    ),
                    ("staggered", "Enable staggered SMS sending"),
                ),
            ),
            Field(
                "sms.sessions",
                "Delivery times",
                "windows",
                "Days and times SMS may be sent. Press +1 to add one; delete one and add it "
                "again to change it.",
            ),
            Field(
                "sms.every_minutes",
                "A message should be sent every X minutes",
                "float",
                "E.g. 100 SMS at one every 3 minutes take 300 minutes of delivery time.",
                minimum=0,
                step="any",
            ),
            Field(
                "sms.warn_after_days",
                "Warn me if the sending will take longer than X days",
                "float",
                minimum=0,
                step="any",
            ),
            Field(
                "sms.stop_confirmation",
                "Reply to STOP with",
                "text",
                "Sent once to a patient who opts out. Empty: the region's text where it "
                "expects one (US), otherwise nothing. {site} becomes the site's name.",
                optional=True,
            ),
            Field(
                "sms.help_reply",
                "Reply to HELP with",
                "text",
                "Empty: the region's text where it expects one (US), otherwise nothing.",
                optional=True,
            ),
        ),
    ),
    Step("finish", "Finish"),
)

STEP_NAMES = tuple(s.name for s in STEPS)
BY_NAME = {s.name: s for s in STEPS}
WINDOW_PATHS = ("email.sessions", "blackouts", "sms.sessions")


SIMULATOR_KIND = "simulator"


def offered(step: Step, *, simulator_enabled: bool) -> Step:
    """The screen as this deployment offers it: no simulator provider unless it is enabled."""
    if simulator_enabled:
        return step
    fields = tuple(
        replace(f, options=tuple(o for o in f.options if o[0] != SIMULATOR_KIND))
        if f.path in ("sms.provider.kind", "sms.secondary_provider.kind")
        else f
        for f in step.fields
    )
    return replace(step, fields=fields)


def step_of(path: str) -> Step | None:
    """The screen where a setting is edited."""
    for step in STEPS:
        if step.owns(path):
            return step
    return None


def field_for(path: str) -> Field | None:
    """The field an error path belongs to (the most specific match)."""
    found = [f for s in STEPS for f in s.fields if _related(f.path, path)]
    return max(found, key=lambda f: len(f.path)) if found else None
