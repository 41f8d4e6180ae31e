"""A message the bus could not carry is refused at submission, naming it; nothing of its batch is
stored."""

from __future__ import annotations

import base64

from shared.bus import subjects
from shared.bus.topology import OUTBOX
from tests.integration.config.conftest import ConfigHarness, config  # noqa: F401

EMAIL_SITE = {"email": {"address": "desk@practice.example", "smtp": {"host": "smtp.example.org"}}}


async def outbox_count(harness: ConfigHarness, site_id: str) -> int:
    info = await harness.nc.jetstream().stream_info(
        OUTBOX, subjects_filter=subjects.outbox("email", site_id)
    )
    return sum((info.state.subjects or {}).values())


async def test_an_email_over_the_bus_payload_is_refused_with_its_batch(
    config: ConfigHarness,  # noqa: F811
) -> None:
    group_id = await config.create_group("Big Mail")
    admin = await config.token(group_id, "group_admin")
    site_id = (await config.create_site(admin, group_id, settings=EMAIL_SITE))["site_id"]
    small = [{"to": f"p{i}@patients.example", "body": f"Hello {i}"} for i in range(6)]
    # Every field within its own limit; together about 2 MiB once encoded, twice what NATS
    # carries in one message (its default max_payload, 1 MiB). The attachments are the
    # largest part.
    big = {
        "to": "big@patients.example",
        "subject": "Your treatment plan",
        "body": "é" * 150_000,
        "html": "<p>" + "€" * 100_000 + "</p>",
        "attachments": [
            {
                "filename": "plan.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(bytes(700 * 1024)).decode(),
            }
        ],
    }
    batch = [*small[:3], big, *small[3:]]
    async with config.client(admin) as client:
        response = await client.post(
            f"/api/v1/sites/{site_id}/messages", json={"channel": "email", "messages": batch}
        )
    assert response.status_code == 422, response.text
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert list(errors) == ["messages[3].attachments"], errors
    assert "1048576" in errors["messages[3].attachments"]
    assert await outbox_count(config, site_id) == 0, "nothing of the batch is stored"

    # Without it, the same batch goes through whole.
    async with config.client(admin) as client:
        response = await client.post(
            f"/api/v1/sites/{site_id}/messages",
            json={"channel": "email", "messages": [*small[:3], *small[3:]]},
        )
    assert response.status_code == 202, response.text
    assert await outbox_count(config, site_id) == len(small)
