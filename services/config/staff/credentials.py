"""Passwords (argon2id via argon2-cffi) and TOTP codes (RFC 6238 via pyotp).

Both are thin wrappers so the rest of the code never picks parameters: argon2-cffi's
defaults follow RFC 9106's recommended profile, and a hash made with older parameters is
re-made on the next successful sign-in.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
ISSUER = "Stagger"
STEP = 30  # seconds per TOTP code (RFC 6238's default, what every authenticator app uses)


def hash_password(password: str) -> str:
    """An argon2id hash (salt and parameters included)."""
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True if `password` matches `stored`; a missing hash matches nothing."""
    if not stored:
        # Hash anyway, so a user without a password answers as slowly as one with.
        _HASHER.hash(password)
        return False
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """The hash was made with parameters weaker than today's."""
    return _HASHER.check_needs_rehash(stored)


def new_totp_secret() -> str:
    """A random base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def totp_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app reads (shown once, at enrolment)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def totp_qr_data_uri(uri: str) -> str:
    """The URI as an SVG QR code in a data: URI (the console's CSP allows data: images)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, border=2)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def totp_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step `code` belongs to (now, or one step either side for clock drift), or
    None if it is wrong or its step was already used (a code works once)."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP
    for step in (current, current - 1, current + 1):
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            if last_step is not None and step <= last_step:
                return None
            return step
    return None


def totp_now(secret: str, now: datetime) -> str:
    """The code for `now` (tests and enrolment checks)."""
    return pyotp.TOTP(secret).generate_otp(int(now.timestamp()) // STEP)
