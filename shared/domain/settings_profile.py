"""The profile section of a site's settings: name, time zone, region.

Pure: no I/O.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from shared.domain.regions import Region
from shared.domain.settings_fields import Strict


class Profile(Strict):
    """Who the site is and where: name, time zone, region."""

    name: str = Field(default="", max_length=120, description="Site name shown to staff.")
    timezone: str = Field(default="Europe/London", description="IANA time zone of the site.")
    region: Region = Field(default="UK", description="Regulatory region: UK, AU, NZ, US or other.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/London)"
            ) from exc
        return value
