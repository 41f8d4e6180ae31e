"""Availability of outside services a test may need, with the CI rule applied.

On a laptop a missing PostgreSQL, IMAP server or Chromium skips the test with the reason shown;
under CI=true `.ci/run` provides them, so a missing one fails the test instead.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """True when running under CI (CI=true)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, what: str, reason: str) -> None:
    """Skip (laptop) or fail (CI) when a needed service is missing."""
    if available:
        return
    message = f"{what} unavailable: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: .ci/run must provide it)")
    pytest.skip(message)
