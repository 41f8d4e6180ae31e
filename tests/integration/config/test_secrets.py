"""Secrets never appear in plain text: not in the stream, the logs, or any response."""

from __future__ import annotations

import uuid

from shared.bus.topology import SETTINGS
from tests.integration.config.conftest import ConfigHarness


async def raw_stream_bytes(config: ConfigHarness) -> bytes:
    js = config.nc.jetstream()
    info = await js.stream_info(SETTINGS)
    chunks = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(SETTINGS, seq)
        chunks.append(repr(msg.headers).encode() + (msg.data or b""))
    return b"\n".join(chunks)


async def test_secrets_are_sealed_in_events_and_masked_everywhere(
    config: ConfigHarness, group: dict[str, str]
) -> None:
    secrets = {
        "smtp": f"smtp-{uuid.uuid4().hex}",
        "imap": f"imap-{uuid.uuid4().hex}",
        "sms": f"sms-{uuid.uuid4().hex}",
        "sms_secondary": f"sms2-{uuid.uuid4().hex}",
        "sms_secondary_webhook": f"sms2-hook-{uuid.uuid4().hex}",
    }
    site_id = group["site_id"]
    responses: list[str] = []
    async with config.client(group["admin"]) as client:
        site = await client.get(f"/api/v1/sites/{site_id}")
        patch = await client.patch(
            f"/api/v1/sites/{site_id}/settings",
            json={
                "set": {
                    "email": {
                        "smtp": {"host": "smtp.example.org", "password": secrets["smtp"]},
                        "imap": {
                            "enabled": True,
                            "host": "imap.example.org",
                            "password": secrets["imap"],
                        },
                    },
                    "sms": {
                        "provider": {
                            "kind": "simulator",
                            "account_id": "acct",
                            "secret": secrets["sms"],
                        },
                        "secondary_provider": {
                            "kind": "simulator",
                            "account_id": "acct-spare",
                            "secret": secrets["sms_secondary"],
                            "webhook_secret": secrets["sms_secondary_webhook"],
                        },
                    },
                }
            },
            headers={"If-Match": site.headers["ETag"]},
        )
        assert patch.status_code == 200, patch.text
        responses.append(patch.text)
        after = await client.get(f"/api/v1/sites/{site_id}")
        responses.append(after.text)
        # Sending the mask back changes nothing and leaks nothing.
        again = await client.patch(
            f"/api/v1/sites/{site_id}/settings",
            json={"set": {"email": {"smtp": {"password": "********"}}}},
            headers={"If-Match": after.headers["ETag"]},
        )
        responses.append(again.text)
        assert again.json()["changed"] is False
        group_view = await client.get(f"/api/v1/groups/{group['group_id']}")
        responses.append(group_view.text)

    settings = after.json()["settings"]
    assert settings["email"]["smtp"]["password"] == "********"
    assert settings["email"]["imap"]["password"] == "********"
    assert settings["sms"]["provider"]["secret"] == "********"
    assert settings["sms"]["secondary_provider"]["secret"] == "********"
    assert settings["sms"]["secondary_provider"]["webhook_secret"] == "********"

    stream = await raw_stream_bytes(config)
    logs = config.service.logs()
    for secret in secrets.values():
        assert secret.encode() not in stream, "a plaintext secret reached the event stream"
        assert secret not in logs, "a plaintext secret reached the logs"
        for text in responses:
            assert secret not in text, "a plaintext secret reached an API response"
    # They are really stored, sealed, and open with the key.
    last = await config.nc.jetstream().get_last_msg(
        SETTINGS, f"settings.{group['group_id']}.{site_id}"
    )
    sealed = __import__("json").loads(last.data)["settings"]["email"]["smtp"]["password"]
    assert sealed.startswith("enc:v1:")
    assert config.box.open(sealed) == secrets["smtp"]
    spare = __import__("json").loads(last.data)["settings"]["sms"]["secondary_provider"]
    assert config.box.open(spare["secret"]) == secrets["sms_secondary"]
