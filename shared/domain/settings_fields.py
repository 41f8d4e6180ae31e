"""Building blocks every settings section uses: the strict base model and field checks.

Pure: no I/O. Split out of `site_settings` so each section's module can share them.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
SEALED_PREFIX = "enc:"
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_EMAIL = re.compile(
    r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


class Strict(BaseModel):
    """Settings models refuse unknown fields so a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def parse_hhmm(value: str) -> time:
    """'09:30' → time(9, 30)."""
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def valid_email(address: str) -> bool:
    """A pragmatic check of one email address (local@domain.tld, no display name)."""
    return len(address) <= 254 and bool(_EMAIL.match(address))


def sealed(value: str | None) -> str | None:
    """Field validator: a secret must arrive sealed (`enc:…`), never as plaintext."""
    if value is not None and not value.startswith(SEALED_PREFIX):
        raise ValueError("secrets are stored encrypted; a plaintext value reached the model")
    return value
