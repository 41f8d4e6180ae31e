"""Delivery receipts and inbound replies: signed, retried, routed, undeliverable numbers."""

from __future__ import annotations

from datetime import datetime

import httpx

from shared.sms_signing import verify_signature
from tests.integration.sms_provider_sim.conftest import MakeAccount
from tests.integration.sms_provider_sim.harness import (
    Account,
    Delivery,
    WebhookReceiver,
    message,
)
from tests.support.waiting import wait_until


def signed_by(delivery: Delivery, secret: str) -> bool:
    """True when the delivery's signature verifies with `secret`."""
    return verify_signature(
        secret,
        delivery.headers.get("x-sim-timestamp"),
        delivery.body,
        delivery.headers.get("x-sim-signature"),
    )


async def test_receipt_arrives_signed_and_the_message_is_delivered(
    client: httpx.AsyncClient, account: Account, receiver: WebhookReceiver
) -> None:
    sent = (await client.post("/v1/messages", json=message("dlr"), headers=account.auth)).json()

    [delivery] = await receiver.wait_for(account.hook_path)

    receipt = delivery.json()
    assert receipt["type"] == "receipt"
    assert receipt["account"] == account.name
    assert receipt["id"] == sent["id"]
    assert receipt["reference"] == "dlr"
    assert receipt["status"] == "delivered"
    assert receipt["error_code"] is None
    assert receipt["segments"] == 1
    assert datetime.fromisoformat(receipt["occurred_at"]).tzinfo is not None
    assert set(receipt) == {
        "type",
        "account",
        "id",
        "reference",
        "status",
        "error_code",
        "segments",
        "occurred_at",
    }
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["x-sim-signature"].startswith("sha256=")
    assert signed_by(delivery, account.webhook_secret)
    assert not signed_by(delivery, "some-other-secret")
    tampered = Delivery(
        delivery.path, delivery.headers, delivery.body.replace(b"delivered", b"undelivered"), 0, 0
    )
    assert not signed_by(tampered, account.webhook_secret)
    current = (await client.get(f"/v1/messages/{sent['id']}", headers=account.auth)).json()
    assert current["status"] == "delivered"
    assert current["updated_at"] == receipt["occurred_at"]


async def test_receipt_is_retried_with_backoff_until_the_receiver_accepts(
    client: httpx.AsyncClient, account: Account, receiver: WebhookReceiver
) -> None:
    receiver.fail_next(account.hook_path, 2)
    sent = (await client.post("/v1/messages", json=message(), headers=account.auth)).json()

    deliveries = await receiver.wait_for(account.hook_path, count=3)

    assert [d.answered for d in deliveries] == [500, 500, 200]
    assert len({d.body for d in deliveries}) == 1, "every attempt carries the same body"
    assert all(signed_by(d, account.webhook_secret) for d in deliveries)
    assert [d.headers["x-sim-attempt"] for d in deliveries] == ["1", "2", "3"]
    first_gap = deliveries[1].at - deliveries[0].at
    second_gap = deliveries[2].at - deliveries[1].at
    assert first_gap >= 0.45, first_gap
    assert second_gap >= 0.95, second_gap

    async def recorded() -> list[dict[str, object]]:
        # The simulator records an attempt once it has read the answer, a moment after the
        # receiver saw the request: wait for the third record rather than race it.
        answer = await client.get("/v1/admin/webhooks", params={"event_id": sent["id"]})
        found: list[dict[str, object]] = answer.json()
        return found if len(found) >= 3 else []

    attempts = await wait_until(recorded, timeout=10, message="three recorded attempts")
    assert [(a["attempt"], a["status_code"], a["ok"]) for a in attempts] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert all("secret" not in key for a in attempts for key in a)


async def test_callback_url_overrides_the_account_webhook(
    client: httpx.AsyncClient, account: Account, receiver: WebhookReceiver
) -> None:
    own_path = f"/callbacks/{account.name}"
    body = message("cb", callback_url=receiver.url(own_path))

    sent = (await client.post("/v1/messages", json=body, headers=account.auth)).json()

    [delivery] = await receiver.wait_for(own_path)
    assert delivery.json()["id"] == sent["id"]
    assert signed_by(delivery, account.webhook_secret)
    assert receiver.at(account.hook_path) == []


async def test_undeliverable_prefix_yields_an_undelivered_receipt(
    client: httpx.AsyncClient, make_account: MakeAccount, receiver: WebhookReceiver
) -> None:
    account = await make_account(undeliverable_prefixes=["+4470000", "+6140000"])
    dead_uk = message("dead-uk", to="+447000012345")
    dead_au = message("dead-au", to="+61400000000")
    alive = message("alive", to="+447700900123")

    for body in (dead_uk, dead_au, alive):
        assert (
            await client.post("/v1/messages", json=body, headers=account.auth)
        ).status_code == 201

    deliveries = await receiver.wait_for(account.hook_path, count=3)
    outcomes = {
        d.json()["reference"]: (d.json()["status"], d.json()["error_code"]) for d in deliveries
    }
    assert outcomes == {
        "dead-uk": ("undelivered", "unreachable"),
        "dead-au": ("undelivered", "unreachable"),
        "alive": ("delivered", None),
    }
    found = await client.get("/v1/messages", params={"reference": "dead-uk"}, headers=account.auth)
    assert (found.json()["status"], found.json()["error_code"]) == ("undelivered", "unreachable")
    # Failed messages are still billed, as with real providers.
    assert found.json()["cost"] == 1


async def test_without_any_webhook_the_status_still_changes(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account(webhook_url=None)
    sent = (await client.post("/v1/messages", json=message(), headers=account.auth)).json()

    async def delivered() -> bool:
        response = await client.get(f"/v1/messages/{sent['id']}", headers=account.auth)
        return bool(response.json()["status"] == "delivered")

    await wait_until(delivered, timeout=10, message="status delivered")
    attempts = (await client.get("/v1/admin/webhooks", params={"event_id": sent["id"]})).json()
    assert attempts == []


async def test_inbound_reply_arrives_signed(
    client: httpx.AsyncClient, account: Account, receiver: WebhookReceiver
) -> None:
    response = await client.post(
        "/v1/admin/inbound",
        json={
            "account": account.name,
            "from": "+447700900123",
            "to": "+447700900999",
            "body": "C — see you then 😀",
            "in_reply_to": "appt-42",
        },
    )

    assert response.status_code == 202
    inbound_id = response.json()["id"]
    assert inbound_id.startswith("sim-in-")
    [delivery] = await receiver.wait_for(account.hook_path)
    payload = delivery.json()
    assert payload == {
        "type": "inbound",
        "account": account.name,
        "id": inbound_id,
        "from": "+447700900123",
        "to": "+447700900999",
        "body": "C — see you then 😀",
        "received_at": payload["received_at"],
        "in_reply_to": "appt-42",
    }
    assert datetime.fromisoformat(payload["received_at"]).tzinfo is not None
    assert signed_by(delivery, account.webhook_secret)


async def test_inbound_reply_is_retried_and_in_reply_to_may_be_absent(
    client: httpx.AsyncClient, account: Account, receiver: WebhookReceiver
) -> None:
    receiver.fail_next(account.hook_path, 1)

    response = await client.post(
        "/v1/admin/inbound",
        json={"account": account.name, "from": "+61412345678", "to": "SmileDent", "body": "STOP"},
    )

    assert response.status_code == 202
    deliveries = await receiver.wait_for(account.hook_path, count=2)
    assert [d.answered for d in deliveries] == [500, 200]
    assert deliveries[1].json()["in_reply_to"] is None
    assert all(signed_by(d, account.webhook_secret) for d in deliveries)


async def test_inbound_for_an_unknown_account_or_bad_number_is_refused(
    client: httpx.AsyncClient, account: Account
) -> None:
    unknown = await client.post(
        "/v1/admin/inbound",
        json={"account": "nobody-here", "from": "+447700900123", "to": "x", "body": "hi"},
    )
    assert unknown.status_code == 404
    bad = await client.post(
        "/v1/admin/inbound",
        json={"account": account.name, "from": "07700900123", "to": "x", "body": "hi"},
    )
    assert bad.status_code == 400
    assert bad.json()["field"] == "from"
