"""Envelope ⇄ NATS message (CloudEvents NATS binding, binary content mode)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.events.envelope import SPEC_VERSION, Envelope, EventData, RawEventData
from shared.events.registry import (
    EventRegistry,
    UnknownEventType,
    UnsupportedEventVersion,
    registry,
)

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_STREAM = "Nats-Expected-Stream"
STREAM_SOURCE = "Nats-Stream-Source"
CONTENT_TYPE = "application/json"


class UndecodableEvent(ValueError):
    """A message that is not a Stagger event (missing attributes, bad JSON, invalid data)."""


def encode(envelope: Envelope) -> tuple[dict[str, str], bytes]:
    """Headers and body for publishing `envelope`; `Nats-Msg-Id` is the event id."""
    headers = {
        MSG_ID: envelope.id,
        "ce-specversion": SPEC_VERSION,
        "ce-id": envelope.id,
        "ce-source": envelope.source,
        "ce-type": envelope.ce_type,
        "ce-time": envelope.time.isoformat(),
        "ce-actor": envelope.actor,
        "content-type": CONTENT_TYPE,
    }
    if envelope.subject is not None:
        headers["ce-subject"] = envelope.subject
    if envelope.correlation_id is not None:
        headers["ce-correlationid"] = envelope.correlation_id
    if envelope.group_id is not None:
        headers["ce-groupid"] = envelope.group_id
    if envelope.site_id is not None:
        headers["ce-siteid"] = envelope.site_id
    return headers, envelope.data.model_dump_json().encode()


def split_type(ce_type: str) -> tuple[str, int]:
    """`stagger.x.v2` → (`stagger.x`, 2)."""
    name, sep, version = ce_type.rpartition(".v")
    if not sep or not version.isdigit():
        raise UndecodableEvent(f"event type {ce_type!r} has no version suffix")
    return name, int(version)


def decode(
    headers: Mapping[str, str] | None,
    body: bytes,
    *,
    stream: str | None = None,
    sequence: int | None = None,
    nats_subject: str | None = None,
    lenient: bool = False,
    events: EventRegistry = registry,
) -> Envelope:
    """Rebuild an envelope from a stored message, upcasting old versions.

    With `lenient`, unknown types and newer versions come back as `RawEventData` instead of
    raising: the audit trail keeps what this build does not understand.
    """
    if not headers or "ce-type" not in headers:
        raise UndecodableEvent("message has no CloudEvents headers")
    try:
        name, version = split_type(headers["ce-type"])
        data = _decode_data(name, version, body, lenient, events)
        current_version = type(data).version() if not isinstance(data, RawEventData) else version
        origin_stream, origin_sequence = _origin(headers.get(STREAM_SOURCE))
        return Envelope(
            type=name,
            version=current_version,
            data=data,
            source=headers["ce-source"],
            actor=headers.get("ce-actor", "unknown"),
            id=headers["ce-id"],
            time=datetime.fromisoformat(headers["ce-time"]),
            subject=headers.get("ce-subject"),
            correlation_id=headers.get("ce-correlationid"),
            group_id=headers.get("ce-groupid"),
            site_id=headers.get("ce-siteid"),
            stream=stream,
            sequence=sequence,
            nats_subject=nats_subject,
            origin_stream=origin_stream,
            origin_sequence=origin_sequence,
        )
    except UndecodableEvent:
        raise
    except (KeyError, ValueError, UnknownEventType, UnsupportedEventVersion) as exc:
        raise UndecodableEvent(f"{type(exc).__name__}: {exc}") from exc


def _decode_data(
    name: str, version: int, body: bytes, lenient: bool, events: EventRegistry
) -> EventData:
    try:
        cls = events.data_class(name)
    except UnknownEventType:
        if lenient:
            return RawEventData.model_validate(json.loads(body or b"{}"))
        raise
    if version == cls.version():
        return cls.model_validate_json(body)
    try:
        raw: Any = json.loads(body)
        return cls.model_validate(events.upcast(name, version, raw))
    except UnsupportedEventVersion:
        if lenient:
            return RawEventData.model_validate(json.loads(body or b"{}"))
        raise


def _origin(source_header: str | None) -> tuple[str | None, int | None]:
    # Sourced copies carry "STREAM SEQ FILTER TRANSFORM SUBJECT ..." naming the original.
    if not source_header:
        return None, None
    parts = source_header.split(" ")
    if len(parts) >= 2 and parts[1].isdigit():
        return parts[0], int(parts[1])
    return None, None
