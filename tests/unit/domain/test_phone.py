from __future__ import annotations

import pytest

from shared.domain.phone import (
    InvalidPhoneNumber,
    is_e164,
    normalise_phone,
    region_of,
    timezone_for_number,
)
from shared.domain.regions import Region


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("+44 7700 900123", None, "+447700900123"),
        ("+44 (0)7700 900123", None, "+447700900123"),
        ("07700 900123", "UK", "+447700900123"),
        ("07700-900-123", "UK", "+447700900123"),
        ("020 7946 0000", "UK", "+442079460000"),
        ("0044 7700 900123", "UK", "+447700900123"),
        ("0491 570 156", "AU", "+61491570156"),
        ("(02) 9876 5432", "AU", "+61298765432"),
        ("0011 44 7700 900123", "AU", "+447700900123"),
        ("021 267 0129", "NZ", "+64212670129"),
        ("09 123 4567", "NZ", "+6491234567"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("1 415 555 2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("011 61 491 570 156", "US", "+61491570156"),
        ("+61 491 570 156", "US", "+61491570156"),  # international form ignores the region
        ("+353 85 123 4567", None, "+353851234567"),
    ],
)
def test_normalise(text: str, region: Region | None, expected: str) -> None:
    assert normalise_phone(text, region) == expected
    assert is_e164(expected)


@pytest.mark.parametrize(
    ("text", "region", "reason"),
    [
        ("", "UK", "empty"),
        ("07700 900123", None, "no default region"),
        ("+0 7700 900123", None, "never starts with 0"),
        ("+1234567890123456", None, "at most 15 digits"),
        ("+44 07700 900123", None, "drop the trunk 0"),
        ("+44 7700 9001", None, "wrong number of digits"),
        ("7700 900123", "UK", "starts with 0"),
        ("0491 570 15", "AU", "wrong number of digits"),
        ("555 2671", "US", "10 digits"),
        ("(015) 555-2671", "US", "area code"),
        ("0800-FLOWERS", "US", "only digits"),
        ("+44 7700 900123 ext 2", None, "only digits"),
        ("44+7700900123", None, "only digits"),
        ("06 1234 5678", "other", "international form"),
    ],
)
def test_invalid(text: str, region: Region | None, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber, match=reason) as caught:
        normalise_phone(text, region)
    assert caught.value.reason


def test_is_e164_wants_the_normalised_form() -> None:
    assert is_e164("+447700900123")
    assert not is_e164("+44 7700 900123")
    assert not is_e164("07700900123")


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("+447700900123", "UK"),
        ("+61491570156", "AU"),
        ("+64212670129", "NZ"),
        ("+14155552671", "US"),
        ("+16045550123", "US"),  # Canada shares +1 and is reported as US
        ("+353851234567", "other"),
    ],
)
def test_region_of(number: str, region: str) -> None:
    assert region_of(number) == region


@pytest.mark.parametrize(
    ("number", "zone"),
    [
        ("+447700900123", "Europe/London"),
        ("+64212670129", "Pacific/Auckland"),
        ("+353851234567", "Europe/Dublin"),
        ("+33612345678", "Europe/Paris"),
        ("+6591234567", "Asia/Singapore"),
        ("+61491570156", "Australia/Perth"),  # AU mobiles carry no location: the fallback
        ("+61298765432", "Australia/Perth"),  # AU landlines neither (Lord Howe is on 02 too)
        ("+12125550123", "America/New_York"),
        ("+13125550123", "America/Chicago"),
        ("+13035550123", "America/Denver"),
        ("+16025550123", "America/Phoenix"),
        ("+14155552671", "America/Los_Angeles"),
        ("+18085550123", "Pacific/Honolulu"),
        ("+19075550123", "Australia/Perth"),  # Alaska spans two zones: fallback
        ("+18505550123", "Australia/Perth"),  # Florida panhandle straddles a zone line
        ("+34612345678", "Australia/Perth"),  # Spain has the Canaries
        ("+79161234567", "Australia/Perth"),
    ],
)
def test_timezone_for_number(number: str, zone: str) -> None:
    assert timezone_for_number(number, "Australia/Perth") == zone


def test_timezone_zones_exist() -> None:
    from zoneinfo import ZoneInfo

    from shared.domain import phone

    for zone in {**phone._SINGLE_ZONE, **phone._AREA_CODE_ZONES}.values():
        ZoneInfo(zone)


def test_timezone_for_number_validates() -> None:
    with pytest.raises(InvalidPhoneNumber):
        timezone_for_number("07700900123", "Europe/London")
