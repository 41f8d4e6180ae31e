"""Submission's batch encoding gives exactly what the generic codec would."""

from __future__ import annotations

from services.config.domain.aggregates import SiteState
from services.config.handlers.submission import SubmissionIn, validate
from shared.domain.site_settings import build
from shared.events.codec import decode, encode


def test_batch_headers_decode_to_the_same_envelope_as_encode_makes() -> None:
    settings = build(
        {"sms": {"provider": {"kind": "simulator", "account_id": "a", "secret": "enc:v1:x"}}}
    )
    site = SiteState("grp", "site-1", {}, settings, 1, 1)
    submission = SubmissionIn.model_validate(
        {
            "channel": "sms",
            "messages": [
                {"to": "+447700900001", "body": "Hi"},
                {"to": "+447700900002", "body": "Hello"},
            ],
        }
    )
    accepted, outgoing = validate(site, submission, "token:abc")
    for item, message in zip(accepted, outgoing, strict=True):
        event = decode(message.headers, message.payload)
        assert event.id == event.data.message_id == item.message_id
        assert message.headers["Nats-Msg-Id"] == f"{site.site_id}:{item.message_id}"
        assert event.subject == item.message_id
        assert (event.group_id, event.site_id, event.actor) == ("grp", "site-1", "token:abc")
        reencoded_headers, reencoded_body = encode(event)
        assert reencoded_body == message.payload
        # The one header that differs on purpose: de-duplication is by site and message id.
        reencoded_headers["Nats-Msg-Id"] = f"{site.site_id}:{reencoded_headers['Nats-Msg-Id']}"
        assert {k: v for k, v in message.headers.items() if k != "Nats-Expected-Stream"} == (
            reencoded_headers
        )
