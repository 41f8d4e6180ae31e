"""The console's pure parts, without a browser: sessions, drafts, form parsing, charts, batches."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet, InvalidToken

from services.config.console import drafts as drafts_module
from services.config.console.drafts import DraftStore
from services.config.console.form_parsing import parse_step, parse_window
from services.config.console.forms import (
    BY_NAME,
    STEPS,
    field_for,
    step_of,
)
from services.config.console.session import Session, SessionCodec
from services.config.console.views import credit_chart, latest_batch, local_time
from shared.domain.site_settings import SiteSettings, flatten, settable_paths


def test_session_cookie_is_sealed_and_tamper_evident() -> None:
    key = Fernet.generate_key()
    codec = SessionCodec([key])
    session = Session(signed_in=True)
    value = codec.dump(session)
    assert session.sid not in value and session.csrf not in value
    opened = codec.load(value)
    assert opened is not None and opened.signed_in and not opened.dirty
    assert opened.sid == session.sid
    assert opened.csrf == session.csrf and opened.csrf_ok(session.csrf)
    assert not opened.csrf_ok(None) and not opened.csrf_ok(session.csrf + "x")
    assert codec.load(value[:-2] + "AA") is None
    assert codec.load("garbage") is None
    # Another service key cannot open it; a rotated ring (new key first) still can.
    other = Fernet.generate_key()
    assert SessionCodec([other]).load(value) is None
    assert SessionCodec([other, key]).load(value) is not None
    # The session key is derived, not the secrets key itself.
    with pytest.raises(InvalidToken):
        Fernet(key).decrypt(value.encode())


def test_login_rotates_the_session() -> None:
    session = Session()
    sid, csrf = session.sid, session.csrf
    session.rotate(True)
    assert session.sid != sid and session.csrf != csrf and session.dirty and session.signed_in


def test_drafts_expire_and_are_per_session_and_site(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = DraftStore(idle_seconds=60, capacity=2)
    store.start("a", "s1", 5)
    store.start("b", "s1", 5)
    assert store.get("a", "s1") is not None and store.get("a", "s2") is None
    store.start("c", "s1", 5)  # capacity 2: the least recently used goes
    assert store.get("b", "s1") is None
    now = time.monotonic()
    monkeypatch.setattr(drafts_module.time, "monotonic", lambda: now + 61)
    assert store.get("a", "s1") is None
    store.start("a", "s1", 7)
    store.start("a", "s2", 7)
    store.drop("a")
    assert store.get("a", "s2") is None


def test_a_draft_keeps_only_real_changes() -> None:
    store = DraftStore()
    draft = store.start("s", "site", 3)
    saved = {"sms.every_minutes": 3, "sms.mode": "staggered"}
    draft.set(saved, "sms.every_minutes", 4)
    draft.set(saved, "sms.mode", "staggered")
    assert draft.patch == {"sms.every_minutes": 4}
    draft.set(saved, "sms.every_minutes", 3)
    assert draft.patch == {}


def test_every_wizard_field_is_a_real_setting() -> None:
    known = settable_paths()
    paths = [f.path for s in STEPS for f in s.fields]
    assert len(paths) == len(set(paths))
    assert set(paths) <= known
    flat = flatten(SiteSettings().model_dump(mode="json"))
    for path in paths:
        assert path in flat
    assert step_of("sms.sessions") is BY_NAME["sms"]
    assert step_of("email.smtp.host") is BY_NAME["account"]
    field = field_for("sms.provider")  # a warning on the provider as a whole
    assert field is not None and field.path.startswith("sms.provider")


def test_parse_step_converts_types_and_names_bad_fields() -> None:
    step = BY_NAME["account"]
    values, secrets, errors = parse_step(
        step,
        {
            "email.enabled.present": "1",
            "email.enabled": "on",  # "Disable email sending and receiving" ticked
            "email.imap.enabled.present": "1",  # unticked: absent
            "email.address": " a@b.example ",
            "email.display_name": "",
            "email.smtp.port": "465",
            "email.smtp.security": "tls",
            "email.smtp.password": "pw",
            "email.imap.port": "9.5",
            "email.provider_preset": "evil",
        },
    )
    assert values["email.enabled"] is False
    assert values["email.imap.enabled"] is False
    assert values["email.address"] == "a@b.example"
    assert values["email.display_name"] is None
    assert values["email.smtp.port"] == 465
    assert secrets == {"email.smtp.password": "pw"}
    assert errors == {
        "email.imap.port": "enter a whole number",
        "email.provider_preset": "choose one of the options",
    }
    values, _, _ = parse_step(
        BY_NAME["schedule"],
        {"email.mode.present": "1", "email.preset_times": "08:00, 13:00"},
    )
    assert values["email.mode"] == "manual"
    assert values["email.preset_times"] == ["08:00", "13:00"]
    values, _, _ = parse_step(
        BY_NAME["provider"],
        {"sms.provider.account_id": "x"},
        locked_paths=frozenset({"sms.provider.account_id"}),
    )
    assert "sms.provider.account_id" not in values


def test_parse_window() -> None:
    form = {"new.sms.sessions.start": "09:00", "new.sms.sessions.end": "13:00"}
    window, errors = parse_window(form, "sms.sessions", ["sat"])
    assert errors == {} and window == {"days": ["sat"], "start": "09:00", "end": "13:00"}
    _, errors = parse_window(form, "sms.sessions", [])
    assert errors == {"new.sms.sessions": "tick at least one day"}
    _, errors = parse_window({"new.sms.sessions.start": "9am"}, "sms.sessions", ["mon"])
    assert "HH:MM" in errors["new.sms.sessions"]


def test_credit_chart_scales_points_into_the_box() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    chart = credit_chart(
        [(now, 400.0), (now + timedelta(hours=1), 250.0), (now + timedelta(hours=2), 60.0)],
        threshold=100,
    )
    assert chart is not None and chart.count == 3
    points = [tuple(map(float, p.split(","))) for p in chart.points.split()]
    assert points[0][0] < points[1][0] < points[2][0]
    assert points[0][1] < points[1][1] < points[2][1]  # falling balance: y grows downwards
    assert all(0 <= x <= chart.width and 0 <= y <= chart.height for x, y in points)
    assert chart.threshold_y is not None and points[1][1] < chart.threshold_y < points[2][1]
    single = credit_chart([(now, 5.0)])
    assert single is not None and len(single.points.split()) == 2
    assert credit_chart([]) is None


def test_latest_batch_counts_the_last_submission_only() -> None:
    old, new = "2026-03-01T10:00:00+00:00", "2026-03-02T10:00:00+00:00"
    events = [
        {"message_id": "a", "data": {"submitted_at": old}},
        {"message_id": "b", "data": {"submitted_at": new}},
        {"message_id": "c", "data": {"submitted_at": new}},
        {"message_id": "d", "data": {"submitted_at": new}},
    ]
    batch = latest_batch(events, {"a": "sent", "b": "sent", "c": "failed", "d": "queued"})
    assert batch is not None
    assert (batch.total, batch.sent, batch.failed, batch.queued, batch.done) == (3, 1, 1, 1, 2)
    assert latest_batch([], {}) is None


def test_local_time() -> None:
    assert local_time("2026-07-01T08:00:00+00:00", "Europe/London") == (
        "Wed 01 Jul 2026 09:00 (Europe/London)"
    )
    assert local_time("2026-07-01T08:00:00+00:00", "Not/AZone").endswith("UTC")
