"""The console's folds of audit records: inbound email with each attachment's release, and the
latest soft-bounce count per address."""

from __future__ import annotations

from services.config.console.replies_pages import inbound_messages
from services.config.console.views import soft_bounce_rows


def received(eid: str, subject: str, attachments: list[str]) -> dict[str, object]:
    return {
        "id": eid,
        "type": "stagger.inbound.email_received.v1",
        "data": {
            "subject": subject,
            "attachments": [{"attachment_id": a, "stored": True} for a in attachments],
        },
    }


def test_inbound_newest_first_with_releases_folded_in() -> None:
    events = [
        received("e1", "first", ["a1", "a2"]),
        received("e2", "second", []),
        {
            "type": "stagger.inbound.attachment_released.v1",
            "actor": "user:u1",
            "time": "2026-12-07T10:00:00+00:00",
            "data": {"attachment_id": "a2"},
        },
    ]
    shown = inbound_messages(events)
    assert [m["subject"] for m in shown] == ["second", "first"]
    first = {a["attachment_id"]: a for a in shown[1]["attachments"]}
    assert first["a1"]["released"] is False and first["a1"]["released_by"] is None
    assert first["a2"]["released"] is True and first["a2"]["released_by"] == "user:u1"
    assert shown[1]["event_id"] == "e1"


def test_soft_bounces_newest_first_with_whether_suppressed() -> None:
    events = [
        {
            "time": "2026-12-07T09:00:00+00:00",
            "siteid": "s-1",
            "data": {"recipient": "a@example.org", "count": 1, "threshold": 3, "status": "4.2.2"},
        },
        {
            "time": "2026-12-07T11:00:00+00:00",
            "data": {"recipient": "b@example.org", "count": 3, "threshold": 3, "site_id": "s-2"},
        },
    ]
    rows = soft_bounce_rows(events, lambda r: r == "b@example.org")
    assert [(r["recipient"], r["count"], r["suppressed"]) for r in rows] == [
        ("b@example.org", 3, True),
        ("a@example.org", 1, False),
    ]
    assert [r["site_id"] for r in rows] == ["s-2", "s-1"]
