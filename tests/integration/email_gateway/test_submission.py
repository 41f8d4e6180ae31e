"""Bad input is refused at submission, with the field named: invalid addresses, oversize or
malformed attachments, an unknown site, a site whose email is off."""

from __future__ import annotations

import base64

from tests.integration.config.conftest import ConfigHarness, config, group  # noqa: F401


def _errors(problem: dict[str, object]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in problem["errors"]}  # type: ignore[attr-defined,index]


def _message(**fields: object) -> dict[str, object]:
    return {"to": "patient@example.org", "subject": "Recall", "body": "Due.", **fields}


async def test_bad_email_submissions_are_refused_with_the_field_named(
    config: ConfigHarness,  # noqa: F811
    group: dict[str, str],  # noqa: F811
) -> None:
    admin = group["admin"]
    site = await config.create_site(
        admin,
        group["group_id"],
        settings={
            "email": {"address": "front@smile.example", "smtp": {"host": "127.0.0.1"}},
        },
    )
    off = await config.create_site(admin, group["group_id"], settings={"email": {"enabled": False}})
    big = base64.b64encode(b"%PDF-" + b"x" * (800 * 1024)).decode()
    cases = [
        ([_message(to="not-an-address")], "messages[0].to", "not a valid email address"),
        ([_message(), _message(to="a@@b")], "messages[1].to", "not a valid email address"),
        (
            [_message(attachments=[{"filename": "scan.pdf", "content_base64": big}])],
            "messages[0].attachments",
            "at most",
        ),
        (
            [_message(attachments=[{"filename": "x.pdf", "content_base64": "%%%"}])],
            "messages[0].attachments[0].content_base64",
            "not valid base64",
        ),
    ]
    async with config.client(admin) as client:
        for messages, field, text in cases:
            reply = await client.post(
                f"/api/v1/sites/{site['site_id']}/messages",
                json={"channel": "email", "messages": messages},
            )
            assert reply.status_code == 422, reply.text
            assert text in _errors(reply.json())[field], reply.json()
        unknown = await client.post(
            "/api/v1/sites/no-such-site/messages",
            json={"channel": "email", "messages": [_message()]},
        )
        assert unknown.status_code == 404
        disabled = await client.post(
            f"/api/v1/sites/{off['site_id']}/messages",
            json={"channel": "email", "messages": [_message()]},
        )
        assert disabled.status_code == 422
        assert "email is disabled" in _errors(disabled.json())["channel"]
    # Nothing of a refused batch reached the outbox.
    info = await config.nc.jetstream().stream_info("OUTBOX")
    assert info.state.messages == 0
