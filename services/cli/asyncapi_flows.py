"""What each service sends and receives on the bus, as the AsyncAPI documents describe it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import shared.events.schemas  # noqa: F401  (registers every event class)
from shared.events.envelope import EventData
from shared.events.registry import registry
from shared.events.schemas.access import TokenIssued, TokenRevoked
from shared.events.schemas.alerts import AlertCleared, AlertRaised
from shared.events.schemas.control import (
    AttachmentReleaseRequested,
    CancelRequested,
    ResetFailedRequested,
    SendNowRequested,
)
from shared.events.schemas.deadletter import DeadLetterRecorded
from shared.events.schemas.dispatch import (
    MessageCancelled,
    MessageDeferred,
    MessageDelivered,
    MessageExpired,
    MessageFailed,
    MessageQueued,
    MessageSent,
    MessageSuppressed,
    MessageUndelivered,
)
from shared.events.schemas.inbound_email import (
    AttachmentReleased,
    EmailAccountStatus,
    InboundEmailReceived,
)
from shared.events.schemas.messages import MessageAccepted
from shared.events.schemas.optouts import RecipientOptedIn, RecipientOptedOut, SoftBounceCounted
from shared.events.schemas.providers import (
    CreditBalanceReported,
    CreditLow,
    CreditTopupNeeded,
    CreditTopupRequested,
    ProviderTested,
    SendingHeld,
    SendingResumed,
)
from shared.events.schemas.replies import ReplyAnswered, ReplyHandled, ReplyReceived
from shared.events.schemas.settings import (
    GroupCreated,
    GroupDefaultsChanged,
    SiteCreated,
    SiteSettingsChanged,
)
from shared.events.schemas.sso import SsoConfigured, SsoRemoved, SsoSignInRefused
from shared.events.schemas.staff import (
    StaffActivated,
    StaffDisabled,
    StaffInvited,
    StaffRoleChanged,
    StaffSessionsEnded,
    StaffSignedIn,
    StaffTotpEnrolled,
)
from shared.events.schemas.ticks import TickIssued


@dataclass(frozen=True)
class Flow:
    """One subject a service sends to or receives from with nats-py rather than FastStream."""

    action: Literal["send", "receive"]
    subject: str
    title: str
    description: str
    events: tuple[type[EventData], ...] = ()
    payload: Any = None  # the schema when the payload is not an event


SETTINGS_EVENTS = (GroupCreated, GroupDefaultsChanged, SiteCreated, SiteSettingsChanged)
TOKEN_EVENTS = (TokenIssued, TokenRevoked)
STAFF_EVENTS = (
    StaffInvited,
    StaffActivated,
    StaffRoleChanged,
    StaffDisabled,
    StaffTotpEnrolled,
    StaffSignedIn,
    StaffSessionsEnded,
)
OPTOUT_EVENTS = (RecipientOptedOut, RecipientOptedIn)
DISPATCH_EVENTS = (
    MessageQueued,
    MessageDeferred,
    MessageSent,
    MessageDelivered,
    MessageUndelivered,
    MessageFailed,
    MessageSuppressed,
    MessageCancelled,
    MessageExpired,
)


def _heartbeat(service: str) -> Flow:
    return Flow(
        "send",
        f"stagger.health.{service}",
        f"{service} heartbeat",
        "Core NATS, every few seconds: this replica's status and readiness checks "
        "(the config service's `/healthz` is built from them).",
        payload=dict[str, Any],
    )


def _settings_followed(service: str, why: str) -> Flow:
    return Flow(
        "receive",
        "settings.>",
        f"{service} settings",
        f"JetStream SETTINGS, replayed then followed: {why}",
        SETTINGS_EVENTS,
    )


def _dead_letters(service: str, what: str) -> Flow:
    return Flow(
        "send",
        "deadletter.{origin}.{consumer}",
        f"{service} dead letters",
        f"JetStream DEADLETTER: {what} this service could not process, with the reason.",
        (DeadLetterRecorded,),
    )


def _gateway(channel: Literal["sms", "email"]) -> tuple[Flow, ...]:
    service = f"{channel}_gateway"
    return (
        Flow(
            "receive",
            f"outbox.{channel}.>",
            f"{channel}-gateway intake",
            f"JetStream OUTBOX (durable `{channel}-outbox`, a pull loop in nats-py): accepted "
            "messages enter the gateway's SQL queue.",
            (MessageAccepted,),
        ),
        _settings_followed(service, "the last settings of every site (its directory)."),
        Flow(
            "send",
            f"dispatch.{channel}.{{site}}",
            f"{channel}-gateway dispatch events",
            "JetStream DISPATCH, relayed from the gateway's SQL outbox: each message's fate; "
            "exactly one terminal event per message.",
            DISPATCH_EVENTS,
        ),
        _dead_letters(service, "ticks, commands and outbox messages"),
        _heartbeat(service),
    )


RAW_FLOWS: dict[str, tuple[Flow, ...]] = {
    "config": (
        Flow(
            "send",
            "settings.{group}.{site}",
            "site settings appended",
            "JetStream SETTINGS, the event store: one subject per site aggregate, appended with "
            "`Nats-Expected-Last-Subject-Sequence` (optimistic concurrency).",
            (SiteCreated, SiteSettingsChanged),
        ),
        Flow(
            "send",
            "settings.{group}._group",
            "group settings appended",
            "JetStream SETTINGS: the group aggregate (its defaults).",
            (GroupCreated, GroupDefaultsChanged),
        ),
        _settings_followed("config", "aggregates loaded per subject and the read model."),
        Flow(
            "receive",
            "access.token.{token}",
            "config tokens",
            "JetStream ACCESS, replayed then followed: API tokens for authentication. Tokens "
            "are issued and revoked by the `stagger token` command.",
            TOKEN_EVENTS,
        ),
        Flow(
            "send",
            "access.sso.{group}",
            "single sign-on settings",
            "JetStream ACCESS: a group's OpenID Connect provider (client secret sealed), read "
            "back by direct get of the subject's last event.",
            (SsoConfigured, SsoRemoved),
        ),
        Flow(
            "send",
            "access.sso_refused.{group}",
            "refused single sign-ons",
            "JetStream ACCESS: a sign-in the group's provider vouched for but Stagger refused.",
            (SsoSignInRefused,),
        ),
        Flow(
            "send",
            "access.token.{token}",
            "console tokens",
            "JetStream ACCESS: machine tokens a group admin creates or revokes in the console, "
            "and the short-lived token each staff console session acts through.",
            TOKEN_EVENTS,
        ),
        Flow(
            "send",
            "access.user.{user}",
            "staff account events",
            "JetStream ACCESS: staff invited, activated, role changed, disabled, signed in, "
            "sessions ended (the audit trail sources ACCESS).",
            STAFF_EVENTS,
        ),
        Flow(
            "send",
            "outbox.{channel}.{site}",
            "accepted messages",
            "JetStream OUTBOX (work queue): each message accepted by the API; "
            "`Nats-Msg-Id` is the message id, so a retried submission is stored once.",
            (MessageAccepted,),
        ),
        Flow(
            "send",
            "control.send_now.{site}",
            "send-now commands",
            "JetStream CONTROL: send what is queued now (the API, the console and "
            "`stagger send-now`).",
            (SendNowRequested,),
        ),
        Flow(
            "send",
            "control.{channel}.reset_failed.{site}",
            "reset-failed commands",
            "JetStream CONTROL: the console asks a gateway to retry a site's failed messages.",
            (ResetFailedRequested,),
        ),
        Flow(
            "send",
            "control.{channel}.cancel.{site}",
            "cancel commands",
            "JetStream CONTROL: cancel a batch's or one message's waiting messages (the API, "
            "the console and `stagger batch cancel`), at most 1,000 ids per command.",
            (CancelRequested,),
        ),
        Flow(
            "send",
            "control.email.release_attachment.{site}",
            "attachment release commands",
            "JetStream CONTROL: a group admin releases a quarantined attachment (the API and "
            "the console's inbound email page).",
            (AttachmentReleaseRequested,),
        ),
        Flow(
            "receive",
            "dispatch.>",
            "config batch read model",
            "JetStream DISPATCH, replayed then followed (projection `config.batches`): each "
            "message's state by batch, and sends per site and hour for the dashboard.",
            DISPATCH_EVENTS,
        ),
        Flow(
            "receive",
            "credits.{account}",
            "credit reports of an account",
            "JetStream PROVIDERS, read per account on demand: the credits page, the dashboard's "
            "holds and the credit-aware forecast and submission.",
            (CreditBalanceReported, CreditLow, CreditTopupRequested, SendingHeld, SendingResumed),
        ),
        Flow(
            "receive",
            "credits.>",
            "config alert projection (providers)",
            "JetStream PROVIDERS and its provider health (`provider.>`), replayed then followed "
            "(projection `config.alerts.providers`): holds, resumes, low credit, top-ups needed "
            "and email sign-in failures become alerts.",
            (
                CreditBalanceReported,
                CreditLow,
                CreditTopupNeeded,
                CreditTopupRequested,
                SendingHeld,
                SendingResumed,
                EmailAccountStatus,
            ),
        ),
        Flow(
            "receive",
            "deadletter.>",
            "config alert projection (dead letters)",
            "JetStream DEADLETTER, replayed then followed (projection "
            "`config.alerts.deadletter`): a dead letter of a group's message is an alert.",
            (DeadLetterRecorded,),
        ),
        Flow(
            "send",
            "alerts.{group}",
            "alerts to group admins",
            "JetStream ALERTS: an alert raised or cleared (each also emailed once to every group "
            "admin); `Nats-Msg-Id` is the event id, so a publish retried after a crash is "
            "stored once.",
            (AlertRaised, AlertCleared),
        ),
        Flow(
            "send",
            "optouts.{group}.{channel}",
            "opt-outs recorded",
            "JetStream OPTOUTS: the unsubscribe link and staff in the console.",
            OPTOUT_EVENTS,
        ),
        Flow(
            "receive",
            "optouts.>",
            "config suppression lists",
            "JetStream OPTOUTS, replayed then followed: the console's opt-out pages.",
            (*OPTOUT_EVENTS, SoftBounceCounted),
        ),
        Flow(
            "send",
            "replies.{site}",
            "staff actions on replies",
            "JetStream INBOUND: a reply marked handled, or answered with one SMS (the SMS "
            "itself goes to OUTBOX like any submission).",
            (ReplyHandled, ReplyAnswered),
        ),
        Flow(
            "receive",
            "replies.>",
            "config replies read model",
            "JetStream INBOUND, replayed then followed (projection `config.replies`): unread "
            "counts, handled and answered replies for the API and the console.",
            (ReplyReceived, ReplyHandled, ReplyAnswered),
        ),
        Flow(
            "send",
            "stagger.rpc.{channel}_gateway.queue_depth",
            "queue depth requests",
            "Core NATS request/reply, 0.5 s timeout: {site_id} → {site_id, queued} "
            "for the forecast; no answer means the queue is assumed empty.",
            payload=dict[str, str],
        ),
        Flow(
            "send",
            "stagger.rpc.sms_gateway.provider_test",
            "provider test requests",
            "Core NATS request/reply: {site_id, group_id, actor} → {ok, balance, unit, error, "
            "provider}; no answer is the API's 503.",
            payload=dict[str, str],
        ),
        Flow(
            "receive",
            "stagger.health.*",
            "heartbeats of every service",
            "Core NATS: every replica's heartbeat, for `/healthz`.",
            payload=dict[str, Any],
        ),
        _dead_letters("config", "settings events"),
        _heartbeat("config"),
    ),
    "scheduler": (
        _settings_followed("scheduler", "the projection of every site's sessions and pace."),
        Flow(
            "receive",
            "control.send_now.>",
            "scheduler send-now",
            "JetStream CONTROL (durable `scheduler-send-now`): each command becomes one manual "
            "tick.",
            (SendNowRequested,),
        ),
        Flow(
            "send",
            "ticks.{channel}.site.{site}",
            "site ticks",
            "JetStream TICKS (work queue): permission for one site to send; deterministic "
            "`Nats-Msg-Id`, so active-active replicas publish each tick once.",
            (TickIssued,),
        ),
        Flow(
            "send",
            "ticks.{channel}.account.{account}",
            "account ticks",
            "JetStream TICKS: permission to send on a shared account.",
            (TickIssued,),
        ),
        _dead_letters("scheduler", "settings events and send-now commands"),
        _heartbeat("scheduler"),
    ),
    "email_gateway": (
        *_gateway("email"),
        Flow(
            "send",
            "inbound.email.{site}",
            "inbound email",
            "JetStream INBOUND: email received over IMAP, and quarantined attachments released.",
            (InboundEmailReceived, AttachmentReleased),
        ),
        Flow(
            "send",
            "optouts.{group}.email",
            "bounced addresses",
            "JetStream OPTOUTS: a hard bounce suppresses the address (`how: bounce`); soft "
            "bounces are counted, and suppress it at the threshold.",
            (RecipientOptedOut, SoftBounceCounted),
        ),
        Flow(
            "send",
            "provider.{account}",
            "email account status events",
            "JetStream PROVIDERS: the SMTP/IMAP account's last result.",
            (EmailAccountStatus,),
        ),
        Flow(
            "receive",
            "access.token.{token}",
            "email-gateway tokens",
            "JetStream ACCESS, replayed then followed: who may release an attachment.",
            TOKEN_EVENTS,
        ),
    ),
    "sms_gateway": (
        *_gateway("sms"),
        Flow(
            "send",
            "credits.{account}",
            "credits",
            "JetStream PROVIDERS: balances, low credit, holds, resumes and top-up requests.",
            (
                CreditBalanceReported,
                CreditLow,
                SendingHeld,
                SendingResumed,
                CreditTopupRequested,
                CreditTopupNeeded,
            ),
        ),
        Flow(
            "send",
            "provider.{account}",
            "provider tests",
            "JetStream PROVIDERS: the result of each provider test.",
            (ProviderTested,),
        ),
        Flow(
            "send",
            "replies.{site}",
            "replies",
            "JetStream INBOUND: SMS replies from patients.",
            (ReplyReceived,),
        ),
        Flow(
            "send",
            "outbox.sms.{site}",
            "STOP confirmations and HELP answers",
            "JetStream OUTBOX: the one SMS a STOP or HELP reply gets back where the site (or "
            "its region) sends one, category `auto_reply`, queued like any submission.",
            (MessageAccepted,),
        ),
        Flow(
            "send",
            "optouts.{group}.sms",
            "sms opt-outs",
            "JetStream OPTOUTS: STOP (and START) replies and provider opt-out reports.",
            OPTOUT_EVENTS,
        ),
        Flow(
            "receive",
            "optouts.>",
            "sms-gateway suppression lists",
            "JetStream OPTOUTS, replayed then followed: nobody on a list is sent to.",
            OPTOUT_EVENTS,
        ),
    ),
    "audit": (
        Flow(
            "receive",
            ">",
            "audit trail",
            "JetStream AUDIT, which sources SETTINGS, ACCESS, CONTROL, DISPATCH, PROVIDERS, "
            "INBOUND, OPTOUTS, DEADLETTER and ALERTS in one order: every event, under its original "
            "subject, hash-chained into the trail (and `dispatch.>` into the message index).",
            tuple(registry.known_types().values()),
        ),
        _settings_followed("audit", "site names for queries and exports."),
        Flow(
            "receive",
            "access.token.{token}",
            "audit tokens",
            "JetStream ACCESS, replayed then followed: who may read the audit API.",
            TOKEN_EVENTS,
        ),
        _dead_letters("audit", "events"),
        _heartbeat("audit"),
    ),
}
