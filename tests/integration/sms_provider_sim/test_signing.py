"""`verify_signature`: the helper the gateway imports (pure functions, no server needed)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.sms_signing import compute_signature, verify_signature

SECRET = "whsec-test"
BODY = b'{"type":"receipt","id":"sim-1"}'
NOW = 1_750_000_000


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, NOW, BODY) == f"sha256={expected}"


def test_a_fresh_valid_signature_verifies() -> None:
    header = compute_signature(SECRET, NOW, BODY)
    assert verify_signature(SECRET, str(NOW), BODY, header, now=NOW + 10)
    assert verify_signature(SECRET.encode(), NOW, BODY.decode(), header, now=NOW)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "header"),
    [
        ("other-secret", str(NOW), BODY, None),
        (SECRET, str(NOW + 1), BODY, None),  # timestamp is part of the signed text
        (SECRET, str(NOW), BODY + b" ", None),  # body must be the raw bytes as received
        (SECRET, str(NOW), BODY, "sha256=" + "0" * 64),
        (SECRET, str(NOW), BODY, "sha1=abc"),
        (SECRET, str(NOW), BODY, ""),
        (SECRET, "not-a-number", BODY, None),
        (SECRET, f"+{NOW}", BODY, None),
        (SECRET, None, BODY, None),
    ],
)
def test_anything_wrong_fails(
    secret: str, timestamp: str | None, body: bytes, header: str | None
) -> None:
    genuine = compute_signature(SECRET, NOW, BODY)
    used = genuine if header is None else header
    assert not verify_signature(secret, timestamp, body, used, now=NOW)


def test_missing_header_fails() -> None:
    assert not verify_signature(SECRET, str(NOW), BODY, None, now=NOW)


@pytest.mark.parametrize(
    ("offset", "valid"), [(300, True), (301, False), (-300, True), (-301, False)]
)
def test_stale_or_future_timestamps_fail(offset: int, valid: bool) -> None:
    header = compute_signature(SECRET, NOW, BODY)
    assert verify_signature(SECRET, str(NOW), BODY, header, now=NOW + offset) is valid


def test_tolerance_is_adjustable() -> None:
    header = compute_signature(SECRET, NOW, BODY)
    assert not verify_signature(SECRET, str(NOW), BODY, header, tolerance_seconds=5, now=NOW + 6)
    assert verify_signature(SECRET, str(NOW), BODY, header, tolerance_seconds=3600, now=NOW + 3000)
