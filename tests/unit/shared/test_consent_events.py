"""Consent categories on the way in: submission validation, bus intake, and old events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.config.domain.aggregates import SiteState
from services.config.handlers.submission import SubmissionIn, validate
from shared.dispatch.intake import with_consent
from shared.domain.site_settings import SettingsError, build
from shared.events.codec import UndecodableEvent, decode
from shared.events.schemas.dispatch import MessageQueued
from shared.events.schemas.messages import MessageAccepted, wants_unsubscribe


def _site(**consent: Any) -> SiteState:
    data: dict[str, Any] = {
        "sms": {"provider": {"kind": "simulator", "account_id": "a", "secret": "enc:v1:x"}}
    }
    if consent:
        data["consent"] = consent
    return SiteState("grp", "site-1", {}, build(data), 1, 1)


def _submit(site: SiteState, *messages: dict[str, Any]) -> list[MessageAccepted]:
    submission = SubmissionIn.model_validate(
        {
            "channel": "sms",
            "messages": [{"to": "+447700900001", "body": "Hi", **m} for m in messages],
        }
    )
    _, outgoing = validate(site, submission, "token:abc")
    return [decode(o.headers, o.payload).data for o in outgoing]  # type: ignore[misc]


def test_the_category_is_given_or_defaults_by_kind() -> None:
    got = _submit(
        _site(),
        {"category": "reminder", "idempotency_key": "1"},
        {"category": "recall", "idempotency_key": "2"},
        {"category": "recall", "consent_category": "service", "idempotency_key": "3"},
        {"idempotency_key": "4"},
    )
    assert [m.consent_category for m in got] == ["service", "marketing", "service", "service"]


def test_an_unknown_category_is_refused_naming_the_field() -> None:
    with pytest.raises(SettingsError) as refused:
        _submit(_site(), {"consent_category": "promotions"})
    assert list(refused.value.errors) == ["messages[0].consent_category"]
    assert "service, marketing" in refused.value.errors["messages[0].consent_category"]


def test_a_group_with_its_own_list_gets_its_first_category_by_default() -> None:
    site = _site(categories=["care", "news"])
    assert [m.consent_category for m in _submit(site, {"category": "recall"})] == ["care"]
    assert _submit(site, {"consent_category": "news"})[0].consent_category == "news"
    with pytest.raises(SettingsError):
        _submit(site, {"consent_category": "marketing"})


def _accepted(**extra: Any) -> MessageAccepted:
    return MessageAccepted(
        message_id="m-1",
        group_id="grp",
        site_id="site-1",
        channel="sms",
        to="+447700900001",
        body="Hi",
        submitted_at=datetime.now(UTC),
        **extra,
    )


def test_bus_intake_fills_the_default_and_refuses_an_unknown_category() -> None:
    categories = ["service", "marketing"]
    assert with_consent(_accepted(category="recall"), categories).consent_category == "marketing"
    kept = with_consent(_accepted(consent_category="service"), categories)
    assert kept.consent_category == "service"
    with pytest.raises(UndecodableEvent, match="consent_category: 'promo'"):
        with_consent(_accepted(consent_category="promo"), categories)


def _headers(type_name: str) -> dict[str, str]:
    return {
        "ce-type": f"{type_name}.v1",
        "ce-id": "e-1",
        "ce-source": "urn:stagger:test",
        "ce-time": datetime(2026, 11, 27, tzinfo=UTC).isoformat(),
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("reminder", "service"), ("recall", "marketing"), ("contact_list", "marketing"),
     ("manual", "service")],
)  # fmt: skip
def test_v1_message_events_come_up_with_their_kinds_default(kind: str, expected: str) -> None:
    accepted = {
        "message_id": "m-1",
        "group_id": "g",
        "site_id": "s",
        "channel": "sms",
        "to": "+447700900123",
        "body": "Hello",
        "category": kind,
        "submitted_at": "2026-11-27T09:00:00+00:00",
    }
    event = decode(_headers(MessageAccepted.event_type), json.dumps(accepted).encode())
    assert event.version == 2 and event.data.consent_category == expected  # type: ignore[attr-defined]
    queued = {k: accepted[k] for k in ("message_id", "group_id", "site_id", "channel", "to")}
    event = decode(
        _headers(MessageQueued.event_type), json.dumps({**queued, "category": kind}).encode()
    )
    assert event.data.consent_category == expected  # type: ignore[attr-defined]


def test_marketing_email_carries_an_unsubscribe_whatever_its_kind() -> None:
    assert not wants_unsubscribe(_accepted(category="reminder", consent_category="service"))
    assert wants_unsubscribe(_accepted(category="reminder", consent_category="marketing"))
    assert wants_unsubscribe(_accepted(category="recall", consent_category="service"))
    assert wants_unsubscribe(_accepted(category="other", consent_category="newsletter"))
