"""Message submission: validated as a whole, stored once in the site's outbox."""

from __future__ import annotations

import base64
from typing import Any

from services.config.handlers.submission import message_id
from shared.bus import subjects
from shared.bus.topology import OUTBOX
from shared.events.codec import decode
from shared.events.schemas.messages import MessageAccepted
from tests.integration.config.conftest import ConfigHarness


def sms_site(group_id: str) -> dict[str, Any]:
    """SMS through a simulator account of the group's own (groups never share one)."""
    provider = {"kind": "simulator", "account_id": f"acct-{group_id}", "secret": "k"}
    return {"sms": {"provider": provider}}


EMAIL_SITE = {"email": {"address": "desk@practice.example", "smtp": {"host": "smtp.example.org"}}}


async def outbox_count(config: ConfigHarness, channel: str, site_id: str) -> int:
    info = await config.nc.jetstream().stream_info(
        OUTBOX,
        subjects_filter=subjects.outbox(channel, site_id),  # type: ignore[arg-type]
    )
    return sum((info.state.subjects or {}).values())


async def test_batch_is_stored_once_with_segments_and_forecast(config: ConfigHarness) -> None:
    group_id = await config.create_group("Senders")
    admin = await config.token(group_id, "group_admin")
    site_id = (await config.create_site(admin, group_id, settings=sms_site(group_id)))["site_id"]
    sender = await config.token(group_id, "sender", [site_id])
    messages = [
        {
            "to": f"07700 900{i:03d}",
            "body": "Your recall is due. Reply YES to book.",
            "idempotency_key": f"recall-{i}",
            "category": "recall",
        }
        for i in range(200)
    ]
    messages.append({"to": "+61491570156", "body": "Hello \U0001f600", "idempotency_key": "emoji"})
    async with config.client(sender) as client:
        first = await client.post(
            f"/api/v1/sites/{site_id}/messages", json={"channel": "sms", "messages": messages}
        )
        again = await client.post(
            f"/api/v1/sites/{site_id}/messages", json={"channel": "sms", "messages": messages}
        )
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["accepted"] == 201
    assert body["messages"][0]["to"] == "+447700900000", "national numbers are normalised"
    assert body["messages"][-1]["encoding"] == "UCS-2"
    assert body["credits_needed"] == 201
    assert body["forecast"]["new"] == 201
    assert [m["message_id"] for m in again.json()["messages"]] == [
        m["message_id"] for m in body["messages"]
    ], "the same idempotency key gives the same message"
    assert await outbox_count(config, "sms", site_id) == 201, "a resubmission is stored once"

    msg = await config.nc.jetstream().get_msg(
        OUTBOX, subject=subjects.outbox("sms", site_id), seq=1, next=True
    )
    event = decode(msg.headers, msg.data)
    assert isinstance(event.data, MessageAccepted)
    assert event.actor.startswith("token:")
    site, mid, tag = msg.headers["Nats-Msg-Id"].split(":")
    assert (site, mid) == (site_id, event.data.message_id)
    assert len(tag) == 24, "the de-duplication id ends in the config service's keyed tag"


async def test_a_forged_dedup_id_of_another_group_does_not_drop_the_sites_message(
    config: ConfigHarness,
) -> None:
    group_a = await config.create_group("Victim")
    admin_a = await config.token(group_a, "group_admin")
    site_a = (await config.create_site(admin_a, group_a, settings=sms_site(group_a)))["site_id"]
    sender = await config.token(group_a, "sender", [site_a])
    group_b = await config.create_group("Forger")
    admin_b = await config.token(group_b, "group_admin")
    site_b = (await config.create_site(admin_b, group_b, settings=sms_site(group_b)))["site_id"]
    # Group B's producer guesses the idempotency key of site-a's next submission and
    # publishes, on its own site's subject, under the de-duplication id `<site>:<id>` that
    # submission would carry without the config service's keyed tag.
    future = message_id(site_a, "sms", "recall-2")
    ack = await config.nc.jetstream().publish(
        subjects.outbox("sms", site_b), b"{}", headers={"Nats-Msg-Id": f"{site_a}:{future}"}
    )
    assert not ack.duplicate
    message = {"to": "07700 900123", "body": "Recall due", "idempotency_key": "recall-2"}
    async with config.client(sender) as client:
        answer = await client.post(
            f"/api/v1/sites/{site_a}/messages", json={"channel": "sms", "messages": [message]}
        )
    assert answer.status_code == 202, answer.text
    assert [m["message_id"] for m in answer.json()["messages"]] == [future]
    assert await outbox_count(config, "sms", site_a) == 1, "site-a's message was dropped"


async def test_one_bad_message_rejects_the_batch_naming_it(config: ConfigHarness) -> None:
    group_id = await config.create_group("Strict")
    admin = await config.token(group_id, "group_admin")
    site_id = (
        await config.create_site(admin, group_id, settings={**sms_site(group_id), **EMAIL_SITE})
    )["site_id"]
    cases = [
        ("sms", {"to": "12345", "body": "x"}, "messages[1].to"),
        ("sms", {"to": "+447700900123", "body": ""}, "messages[1].body"),
        ("sms", {"to": "+447700900123", "body": "x" * 1601}, "messages[1].body"),
        ("sms", {"to": "+447700900123", "body": "x", "subject": "no"}, "messages[1].subject"),
        ("sms", {"to": "+447700900123", "body": "x", "color": "red"}, "messages[1].color"),
        ("email", {"to": "not-an-address", "body": "x"}, "messages[1].to"),
        (
            "email",
            {
                "to": "a@b.example",
                "body": "x",
                "attachments": [
                    {
                        "filename": "big.pdf",
                        "content_base64": base64.b64encode(b"0" * 800_000).decode(),
                    }
                ],
            },
            "messages[1].attachments",
        ),
        (
            "email",
            {
                "to": "a@b.example",
                "body": "x",
                "attachments": [{"filename": "x.pdf", "content_base64": "***"}],
            },
            "messages[1].attachments[0].content_base64",
        ),
        (
            "email",
            {"to": "a@b.example", "body": "x", "expires_at": "2001-01-01T00:00:00Z"},
            "messages[1].expires_at",
        ),
    ]
    async with config.client(admin) as client:
        for channel, bad, field in cases:
            good = {"to": "+447700900001" if channel == "sms" else "ok@b.example", "body": "fine"}
            response = await client.post(
                f"/api/v1/sites/{site_id}/messages",
                json={"channel": channel, "messages": [good, bad]},
            )
            assert response.status_code == 422, (field, response.text)
            assert field in [e["field"] for e in response.json()["errors"]], response.json()
        too_many = await client.post(
            f"/api/v1/sites/{site_id}/messages",
            json={"channel": "sms", "messages": [{"to": "+447700900001", "body": "x"}] * 10_001},
        )
        unknown = await client.post(
            "/api/v1/sites/no-such-site/messages",
            json={"channel": "sms", "messages": [{"to": "+1", "body": "x"}]},
        )
    assert too_many.status_code == 422
    assert unknown.status_code == 404
    assert await outbox_count(config, "sms", site_id) == 0
    assert await outbox_count(config, "email", site_id) == 0


async def test_channel_that_is_not_set_up_is_refused(config: ConfigHarness) -> None:
    group_id = await config.create_group("Unready")
    admin = await config.token(group_id, "group_admin")
    site_id = (await config.create_site(admin, group_id))["site_id"]
    async with config.client(admin) as client:
        sms = await client.post(
            f"/api/v1/sites/{site_id}/messages",
            json={"channel": "sms", "messages": [{"to": "+447700900001", "body": "x"}]},
        )
        email = await client.post(
            f"/api/v1/sites/{site_id}/messages",
            json={"channel": "email", "messages": [{"to": "a@b.example", "body": "x"}]},
        )
    assert sms.status_code == 422 and "SMS provider" in sms.json()["errors"][0]["message"]
    assert email.status_code == 422 and "email account" in email.json()["errors"][0]["message"]
