"""Which fields of a stored event are personal, and sealing them (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared.events.schemas.messages import Attachment, MessageAccepted
from shared.privacy.cipher import is_personal, key_id_of
from shared.privacy.clear_fields import (
    ADDRESS,
    BODY,
    REPLY,
    needs_sealing,
    recipient_of,
    sealed_copy,
    sealed_subject,
    when_of,
)
from shared.privacy.codec import MessageSealer, key_id

TAG = "ab" * 16


def fake_seal(kind: str, value: str) -> str:
    """A stand-in that shows which kind sealed which value (no key needed)."""
    return f"pd1:{TAG}.{kind}.0:{value[::-1]}"


def test_a_queued_message_seals_its_address_only() -> None:
    data = {"message_id": "m-1", "group_id": "g", "to": "+61412345678", "category": "reminder"}
    assert needs_sealing("stagger.dispatch.queued.v2", data)
    out = sealed_copy("stagger.dispatch.queued.v2", data, fake_seal, TAG)
    assert out["to"] == fake_seal(ADDRESS, "+61412345678")
    assert {k: v for k, v in out.items() if k != "to"} == {
        k: v for k, v in data.items() if k != "to"
    }
    assert data["to"] == "+61412345678"  # the input is left alone
    assert not needs_sealing("stagger.dispatch.queued.v2", out)


def test_a_reply_seals_number_and_text_with_their_kinds() -> None:
    data = {
        "group_id": "g",
        "from_number": "+61412345678",
        "to": "+61400000000",
        "body": "STOP please",
        "received_at": "2026-11-02T09:30:00+00:00",
    }
    assert recipient_of("stagger.reply.received.v1", data) == ("g", "+61412345678")
    assert when_of("stagger.reply.received.v1", data) == "2026-11-02T09:30:00+00:00"
    out = sealed_copy("stagger.reply.received.v1", data, fake_seal, TAG)
    assert key_id_of(out["from_number"]).endswith(f".{ADDRESS}.0")
    assert key_id_of(out["body"]).split(".")[1] == REPLY
    assert out["to"] == "+61400000000"  # the site's own number is not personal


def test_an_opt_out_gets_its_tag_and_a_subject_naming_the_number_becomes_the_tag() -> None:
    data = {"group_id": "g", "recipient": "+61412345678", "recipient_tag": None}
    ce_type = "stagger.optout.opted_out.v1"
    assert needs_sealing(ce_type, {**data, "recipient": fake_seal(ADDRESS, "x")}) is False
    out = sealed_copy(ce_type, data, fake_seal, TAG)
    assert out["recipient_tag"] == TAG and is_personal(out["recipient"])
    assert sealed_subject(ce_type, data, "+61412345678", TAG) == TAG
    assert sealed_subject(ce_type, data, "something-else", TAG) == "something-else"
    # Only the subject in clear still counts as something to seal.
    sealed = {**data, "recipient": fake_seal(ADDRESS, "+61412345678")}
    assert not needs_sealing(ce_type, sealed, "+61412345678")  # recipient no longer clear
    assert needs_sealing(ce_type, data, TAG)


def test_sealed_values_empty_values_and_other_types_are_left_alone() -> None:
    sealed = {"group_id": "g", "to": fake_seal(ADDRESS, "+61412345678")}
    assert not needs_sealing("stagger.dispatch.queued.v2", sealed)
    assert not needs_sealing("stagger.reply.answered.v1", {"group_id": "g", "to": "", "body": ""})
    assert not needs_sealing("stagger.dispatch.sent.v1", {"to": "+61412345678"})
    assert not needs_sealing(None, {"to": "+61412345678"})
    assert recipient_of("stagger.dispatch.queued.v2", {"to": "+614"}) is None  # no group


def test_an_accepted_message_seals_the_same_fields_as_the_api_does() -> None:
    """The table and `MessageSealer` (what the API and the intake use) agree field by field."""
    msg = MessageAccepted(
        message_id="m-1",
        group_id="g",
        site_id="s",
        channel="email",
        to="patient@example.org",
        body="Your appointment",
        subject="Reminder",
        html="<p>Your appointment</p>",
        attachments=[Attachment(filename="scan.pdf", size=3, content_b64="YWJj")],
        submitted_at=datetime(2026, 11, 2, tzinfo=UTC),
    )
    day = "20261102"
    keys = {key_id(TAG, kind, day): b"k" * 32 for kind in (ADDRESS, BODY)}
    by_api = json.loads(MessageSealer("g", day, {msg.to: TAG}, keys).message(msg).model_dump_json())
    data = json.loads(msg.model_dump_json())
    by_table = sealed_copy("stagger.message.accepted.v2", data, fake_seal, TAG)
    changed_by_api = {k for k in data if by_api[k] != data[k]}
    changed_by_table = {k for k in data if by_table[k] != data[k]}
    assert changed_by_api == changed_by_table
    assert by_table["attachments"][0]["filename"] == fake_seal(BODY, "scan.pdf")
    assert by_table["recipient_tag"] == TAG


def test_an_inbound_email_seals_sender_name_subject_and_file_names_and_gets_its_tag() -> None:
    data = {
        "group_id": "g",
        "account": "reception@clinic.example",
        "sender": "patient@example.org",
        "sender_tag": None,
        "sender_name": "Pat Patient",
        "subject": "My appointment",
        "received_at": "2026-11-02T09:30:00+00:00",
        "attachments": [{"attachment_id": "a1", "filename": "referral.pdf"}],
    }
    ce_type = "stagger.inbound.email_received.v1"
    assert needs_sealing(ce_type, data)
    assert recipient_of(ce_type, data) == ("g", "patient@example.org")
    out = sealed_copy(ce_type, data, fake_seal, TAG)
    assert out["sender"] == fake_seal(ADDRESS, "patient@example.org")
    assert out["sender_tag"] == TAG
    assert out["sender_name"] == fake_seal(BODY, "Pat Patient")
    assert out["subject"] == fake_seal(BODY, "My appointment")
    assert out["attachments"][0]["filename"] == fake_seal(BODY, "referral.pdf")
    assert out["account"] == "reception@clinic.example"  # the practice's own mailbox
    assert not needs_sealing(ce_type, out)


def test_a_soft_bounce_named_in_clear_is_sealed_and_its_subject_becomes_the_tag() -> None:
    data = {"group_id": "g", "recipient": "patient@example.org", "count": 1, "threshold": 3}
    ce_type = "stagger.optout.soft_bounce_counted.v1"
    assert needs_sealing(ce_type, data, "patient@example.org")
    out = sealed_copy(ce_type, data, fake_seal, TAG)
    assert out["recipient"] == fake_seal(ADDRESS, "patient@example.org")
    assert sealed_subject(ce_type, data, "patient@example.org", TAG) == TAG
    assert not needs_sealing(ce_type, out, TAG)


def test_a_soft_bounce_that_names_the_tag_already_needs_nothing() -> None:
    data = {"group_id": "g", "recipient": TAG, "count": 2, "threshold": 3}
    assert not needs_sealing("stagger.optout.soft_bounce_counted.v1", data, TAG)
