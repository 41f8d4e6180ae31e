"""Accepting messages: validate every one, then publish all to the site's outbox.

A batch is validated as a whole first — one bad message rejects the batch with an error naming
`messages[i].field`, and nothing is published. Each accepted message gets an id (derived from
the client's idempotency key when given, so a retried submission is the same message) and is
published to `outbox.<channel>.<site>` with `Nats-Msg-Id` = `<site>:<id>:<tag>` (JetStream
de-duplicates across every site's subject, so the site keeps tenants' ids apart, and the tag,
keyed by a secret of the config service, keeps another tenant's producer from forging it).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from nats.aio.client import Client
from nats.js.errors import APIError
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field

from services.config.domain.aggregates import SiteState
from shared import tracing
from shared.bus import outbox_ids, subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.domain.batches import batch_id_for
from shared.domain.consent import default_category
from shared.domain.phone import InvalidPhoneNumber, normalise_phone
from shared.domain.segments import count_segments
from shared.domain.site_settings import SettingsError, valid_email
from shared.events.codec import EXPECTED_STREAM, MSG_ID, encode
from shared.events.envelope import Envelope, new_event_id
from shared.events.schemas.messages import Attachment, MessageAccepted, SubmittedCategory
from shared.privacy.codec import MessageSealer, PersonalData

MAX_BATCH = 10_000
MAX_SMS_BODY = 1600  # the strictest common provider maximum (Twilio)
MAX_EMAIL_BODY = 200_000
MAX_ATTACHMENTS_BYTES = 700 * 1024  # the whole message must fit NATS' 1 MiB payload
MSG_ID_PURPOSE = "outbox-msg-id"
"""What the key of the `Nats-Msg-Id` tag is derived for (`SecretBox.derive_key`)."""
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c3e0a-5b1d-4e3c-9a57-5f2b7d1e8c42")


class AttachmentIn(BaseModel):
    """An attachment, base64-encoded."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    content_base64: str


class MessageIn(BaseModel):
    """One message to send."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=320, description="E.164 number or email address.")
    body: str = Field(default="", max_length=MAX_EMAIL_BODY)
    subject: str | None = Field(default=None, max_length=998)
    html: str | None = Field(default=None, max_length=MAX_EMAIL_BODY)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=20)
    category: SubmittedCategory = Field(
        default="other", description="What the message is (reminder, recall…)."
    )
    consent_category: str | None = Field(
        default=None,
        max_length=32,
        description="Consent category: one of the group's (default: service, marketing). "
        "Unset: the usual one for `category` (reminder, manual, other → service; recall, "
        "contact_list, marketing → marketing) if the group has it, else the group's first.",
    )
    client_reference: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Same key, same site and channel: the same message (stored once).",
    )
    not_before: datetime | None = None
    expires_at: datetime | None = None


class SubmissionIn(BaseModel):
    """A batch of messages for one site and channel."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "sms",
                    "messages": [
                        {
                            "to": "+447700900123",
                            "body": "Your check-up is due: call us on 020 7946 0000.",
                            "category": "recall",
                            "consent_category": "marketing",
                            "idempotency_key": "recall-2026-11-1042",
                        }
                    ],
                }
            ]
        },
    )

    channel: Literal["sms", "email"]
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)


@dataclass(frozen=True)
class Accepted:
    """What the submitter learns about each accepted message."""

    message_id: str
    to: str
    segments: int | None
    encoding: str | None
    cost: float | None
    consent_category: str = "service"

    def as_json(self) -> dict[str, Any]:
        """The message as the API reports it."""
        return {
            "message_id": self.message_id,
            "to": self.to,
            "consent_category": self.consent_category,
            "segments": self.segments,
            "encoding": self.encoding,
            "credits": self.cost,
        }


class PublishFailed(Exception):
    """Some messages could not be stored; the ids that were stored are listed."""

    def __init__(self, stored: list[str], failed: list[str], reason: str) -> None:
        super().__init__(reason)
        self.stored = stored
        self.failed = failed
        self.reason = reason


def message_id(site_id: str, channel: str, idempotency_key: str | None) -> str:
    """Deterministic from an idempotency key, else a new time-ordered id."""
    if idempotency_key is None:
        return new_event_id()
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{site_id}\x1f{channel}\x1f{idempotency_key}"))


def batch_of(site: SiteState, submission: SubmissionIn) -> str:
    """The submission's batch id: the same for a retried submission whose messages all have
    idempotency keys, a new one otherwise."""
    return batch_id_for(
        site.site_id, submission.channel, [m.idempotency_key for m in submission.messages]
    )


def _channel_ready(site: SiteState, channel: str) -> None:
    settings = site.settings
    if channel == "sms" and settings.sms.provider.kind == "none":
        raise SettingsError({"channel": "this site has no SMS provider (provider is 'none')"})
    if channel == "email":
        if not settings.email.enabled:
            raise SettingsError({"channel": "email is disabled for this site"})
        if not settings.email.address or not settings.email.smtp.host:
            raise SettingsError(
                {"channel": "this site has no email account configured (address, SMTP server)"}
            )


def _header_template(site: SiteState, actor: str, now: datetime) -> dict[str, str]:
    # Every message of a batch shares all attributes but its id: encode them once (a test
    # checks that decoding these headers gives exactly the envelope `encode` would make).
    probe = Envelope(
        type=MessageAccepted.event_type,
        version=MessageAccepted.event_version,
        data=MessageAccepted.model_construct(),
        source="urn:stagger:config",
        actor=actor,
        id="-",
        time=now,
        subject="-",
        group_id=site.group_id,
        site_id=site.site_id,
    )
    headers, _ = encode(probe)
    headers[EXPECTED_STREAM] = "OUTBOX"
    return headers


def wire_size(headers: Mapping[str, str], payload: bytes) -> int:
    """Bytes the server counts against its `max_payload`: the header block and the payload.

    (nats-py checks the payload alone; the server counts both and closes the connection of a
    client that sends more.)"""
    block = len(b"NATS/1.0\r\n\r\n")
    block += sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
    return block + len(payload)


def _largest_part(data: MessageAccepted) -> str:
    """The field that makes most of an encoded message: what its sender should shrink."""
    parts = {
        "body": len(data.body.encode()),
        "html": len((data.html or "").encode()),
        "attachments": sum(len(a.content_b64) for a in data.attachments),
    }
    return max(parts, key=lambda name: parts[name])


def validate(
    site: SiteState,
    submission: SubmissionIn,
    actor: str,
    *,
    max_payload: int | None = None,
    msg_id_key: bytes | None = None,
    batch_id: str | None = None,
    seal: MessageSealer | None = None,
) -> tuple[list[Accepted], list[Outgoing]]:
    """Check every message; raise SettingsError naming each bad `messages[i].field`.

    With `seal`, each message's personal fields go out sealed under its recipient's keys
    (docs/privacy.md); the size check then applies to the sealed form the bus carries.

    Every message carries `batch_id` (by default `batch_of(site, submission)`).

    `max_payload` is the bus's limit per message (`nc.max_payload`): a message whose encoded
    form is larger could never be stored, so it is refused here with the rest of its batch.
    `msg_id_key` tags each `Nats-Msg-Id` so that no producer can forge it; without it (tests
    and benchmarks publishing as a producer would) the id is the plain `<site>:<id>`.
    """
    _channel_ready(site, submission.channel)
    batch = batch_id or batch_of(site, submission)
    errors: dict[str, str] = {}
    accepted: list[Accepted] = []
    outgoing: list[Outgoing] = []
    now = datetime.now(UTC)
    region = site.settings.profile.region
    per_segment = site.settings.sms.provider.credits_per_segment
    subject = subjects.outbox(submission.channel, site.site_id)
    seen_ids: set[str] = set()
    categories = site.settings.consent.categories
    template = _header_template(site, actor, now)
    tracing.inject(template)  # the current `stagger.submit` span, when tracing is on
    for index, message in enumerate(submission.messages):
        where = f"messages[{index}]"
        segments = encoding = cost = None
        attachments: list[Attachment] = []
        if submission.channel == "sms":
            try:
                to = normalise_phone(message.to, region)
            except InvalidPhoneNumber as exc:
                errors[f"{where}.to"] = f"not a valid phone number: {exc}"
                continue
            if not message.body.strip():
                errors[f"{where}.body"] = "an SMS needs a body"
                continue
            if len(message.body) > MAX_SMS_BODY:
                errors[f"{where}.body"] = f"longer than {MAX_SMS_BODY} characters"
                continue
            if message.subject is not None:
                errors[f"{where}.subject"] = "not allowed for SMS"
            if message.html is not None:
                errors[f"{where}.html"] = "not allowed for SMS"
            if message.attachments:
                errors[f"{where}.attachments"] = "not allowed for SMS"
            count = count_segments(message.body)
            segments, encoding = count.segments, count.encoding
            cost = round(segments * per_segment, 4)
        else:
            to = message.to.strip()
            if not valid_email(to):
                errors[f"{where}.to"] = "not a valid email address"
                continue
            if not message.body.strip() and not (message.html or "").strip():
                errors[f"{where}.body"] = "an email needs a body or html"
                continue
            total = 0
            for a_index, attachment in enumerate(message.attachments):
                try:
                    raw = base64.b64decode(attachment.content_base64, validate=True)
                except (binascii.Error, ValueError):
                    errors[f"{where}.attachments[{a_index}].content_base64"] = "not valid base64"
                    continue
                total += len(raw)
                attachments.append(
                    Attachment(
                        filename=attachment.filename,
                        content_type=attachment.content_type,
                        size=len(raw),
                        content_b64=attachment.content_base64,
                    )
                )
            if total > MAX_ATTACHMENTS_BYTES:
                errors[f"{where}.attachments"] = (
                    f"attachments total {total} bytes; at most {MAX_ATTACHMENTS_BYTES}"
                )
        if message.expires_at is not None and message.expires_at.tzinfo is None:
            errors[f"{where}.expires_at"] = "needs a time zone (e.g. 2026-05-01T12:00:00Z)"
        if message.not_before is not None and message.not_before.tzinfo is None:
            errors[f"{where}.not_before"] = "needs a time zone (e.g. 2026-05-01T12:00:00Z)"
        if (
            message.expires_at is not None
            and message.expires_at.tzinfo is not None
            and message.expires_at <= now
        ):
            errors[f"{where}.expires_at"] = "already in the past"
        consent = message.consent_category
        if consent is None:
            consent = default_category(message.category, categories)
        elif consent not in categories:
            errors[f"{where}.consent_category"] = (
                f"{consent!r} is not one of this group's consent categories "
                f"({', '.join(categories)})"
            )
        mid = message_id(site.site_id, submission.channel, message.idempotency_key)
        if mid in seen_ids:
            errors[f"{where}.idempotency_key"] = "repeats another message of this batch"
        seen_ids.add(mid)
        if errors:
            continue
        data = MessageAccepted(
            message_id=mid,
            group_id=site.group_id,
            site_id=site.site_id,
            channel=submission.channel,
            to=to,
            body=message.body,
            subject=message.subject,
            html=message.html,
            attachments=attachments,
            category=message.category,
            consent_category=consent,
            client_reference=message.client_reference,
            not_before=message.not_before,
            expires_at=message.expires_at,
            segments=segments,
            encoding=encoding,
            submitted_at=now,
            batch_id=batch,
        )
        if seal is not None:
            data = seal.message(data)
        headers = dict(template)
        headers["ce-id"] = headers["ce-subject"] = mid
        headers[MSG_ID] = (
            outbox_ids.keyed_msg_id(site.site_id, mid, msg_id_key)
            if msg_id_key is not None
            else outbox_ids.msg_id(site.site_id, mid)
        )
        body = data.model_dump_json().encode()
        size = wire_size(headers, body)
        if max_payload is not None and size > max_payload:
            part = _largest_part(data)
            errors[f"{where}.{part}"] = (
                f"the message is {size} bytes encoded; the bus carries at most {max_payload} "
                f"bytes per message: make its {part} smaller"
            )
            continue
        outgoing.append(Outgoing(subject, body, headers))
        accepted.append(Accepted(mid, to, segments, encoding, cost, consent))
    if errors:
        raise SettingsError(errors)
    return accepted, outgoing


async def publish(nc: Client, accepted: list[Accepted], outgoing: list[Outgoing]) -> None:
    """Store every message in the outbox (pipelined); duplicates of earlier ones are no-ops."""
    try:
        results = await publisher_for(nc).publish_all(outgoing)
    except TimeoutError as exc:
        raise PublishFailed([], [a.message_id for a in accepted], str(exc)) from exc
    failed = [
        a.message_id for a, r in zip(accepted, results, strict=True) if isinstance(r, APIError)
    ]
    if failed:
        stored = [
            a.message_id
            for a, r in zip(accepted, results, strict=True)
            if not isinstance(r, APIError)
        ]
        first = next(r for r in results if isinstance(r, APIError))
        raise PublishFailed(stored, failed, f"the outbox refused messages: {first.description}")


async def submit(
    nc: Client,
    site: SiteState,
    submission: SubmissionIn,
    actor: str,
    *,
    trace_headers: Mapping[str, str] | None = None,
    msg_id_key: bytes | None = None,
    batch_id: str | None = None,
    before_publish: Callable[[list[Accepted]], Awaitable[None]] | None = None,
    personal: PersonalData | None = None,
) -> list[Accepted]:
    """Validate and publish a batch, traced as one `stagger.submit` span (continuing the
    caller's trace when `trace_headers` carry a `traceparent`). `before_publish` gets the
    validated messages before any is published (the batch read model records them)."""
    with tracing.span(
        tracing.SUBMIT,
        parent=tracing.extract(trace_headers),
        kind=SpanKind.SERVER,
        attributes={
            "stagger.group_id": site.group_id,
            "stagger.site_id": site.site_id,
            "stagger.channel": submission.channel,
            "stagger.messages": len(submission.messages),
            "stagger.actor": actor,
        },
    ):
        accepted, outgoing = validate(
            site,
            submission,
            actor,
            max_payload=nc.max_payload,
            msg_id_key=msg_id_key,
            batch_id=batch_id,
        )
        if personal is not None:
            # Validated in clear first (addresses normalised), then again sealing with the
            # recipients' keys: nothing personal reaches the outbox in clear.
            sealer = await personal.sealer(site.group_id, [a.to for a in accepted])
            accepted, outgoing = validate(
                site,
                submission,
                actor,
                max_payload=nc.max_payload,
                msg_id_key=msg_id_key,
                batch_id=batch_id,
                seal=sealer,
            )
        if before_publish is not None:
            await before_publish(accepted)
        await publish(nc, accepted, outgoing)
    return accepted
