"""Pure rules of issue 17's console/token/audit part: token expiry input, the public origin,
redaction of audit output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.audit.handlers.queries import redact
from services.config.console.app import web_origin
from shared.tokens import expiry, parse_duration

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        (" 45s ", timedelta(seconds=45)),
    ],
)
def test_durations(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["", "0d", "-1d", "1y", "d", "1.5h", "30 days"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_expiry_from_a_duration_or_an_instant() -> None:
    assert expiry(expires_in=None, expires_at=None, now=NOW) is None
    assert expiry(expires_in="1d", expires_at=None, now=NOW) == NOW + timedelta(days=1)
    at = expiry(expires_in=None, expires_at="2027-01-31T18:00:00+01:00", now=NOW)
    assert at == datetime(2027, 1, 31, 17, 0, tzinfo=UTC)
    # No offset: UTC.
    assert expiry(expires_in=None, expires_at="2027-01-31T18:00", now=NOW) == datetime(
        2027, 1, 31, 18, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("expires_in", "expires_at", "message"),
    [
        ("1d", "2027-01-01", "not both"),
        (None, "2026-12-07T11:59:59+00:00", "--expires-at: .* not in the future"),
        (None, "soon", "--expires-at: 'soon' is not an ISO 8601 instant"),
        ("forever", None, "--expires-in: 'forever' is not a duration"),
    ],
)
def test_expiry_errors_name_the_option(
    expires_in: str | None, expires_at: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        expiry(expires_in=expires_in, expires_at=expires_at, now=NOW)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Console.Example.com/", "https://console.example.com"),
        ("https://console.example.com:443/stagger", "https://console.example.com"),
        ("https://console.example.com:8443", "https://console.example.com:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:80/", "http://[::1]"),
    ],
)
def test_the_public_origin_is_what_a_browser_sends(url: str, origin: str) -> None:
    assert web_origin(url) == origin


def test_redaction_masks_sealed_values_and_token_hashes_only() -> None:
    data = {
        "token_id": "abc",
        "secret_hash": "f" * 64,
        "settings": {"sms": {"provider": {"secret": "enc:v1:gAAAAB-x_y=", "kind": "twilio"}}},
        "changes": [{"path": "sms.provider.secret", "old": "(set)", "new": "(changed)"}],
        "note": "was enc:v1:gAAAAABzz= before",
    }
    shown = redact(data)
    assert shown["secret_hash"] == "********"
    assert shown["settings"]["sms"]["provider"] == {"secret": "********", "kind": "twilio"}
    assert shown["changes"] == data["changes"]
    assert shown["note"] == "was ******** before"
    assert shown["token_id"] == "abc"
    assert redact("plain enc:v1:abc text") == "plain ******** text"
    assert redact({"secret_hash": None}) == {"secret_hash": None}
