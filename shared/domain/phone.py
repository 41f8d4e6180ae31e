"""E.164 phone numbers: validation, normalisation, region and a best-effort time zone.

E.164: "+", a country code of 1-3 digits, at most 15 digits in all, never a 0 after the "+".
Input may carry spaces, dashes, dots and parentheses (and "(0)" after the country code, as UK
numbers are often written); they are stripped. National numbers need a default region:
UK/AU/NZ numbers start with the trunk prefix 0 (07700 900123 becomes +447700900123), US numbers
are 10 digits, optionally with a leading 1.
"""

from __future__ import annotations

import functools
import re

from shared.domain.regions import Region


class InvalidPhoneNumber(ValueError):
    """The text is not a phone number Stagger can send to; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SEPARATORS = re.compile(r"[\s\-().]")
_ALLOWED = re.compile(r"\+?[0-9\s\-().]+")
# NANP: area code and exchange both start with 2-9.
_NANP = re.compile(r"[2-9][0-9]{2}[2-9][0-9]{6}")

_CALLING_CODES: dict[Region, str] = {"UK": "44", "AU": "61", "NZ": "64", "US": "1"}
# Dialling out of the country: 00 in the UK and NZ, 0011 in Australia, 011 in the NANP.
_EXIT_PREFIXES: dict[Region, str] = {"UK": "00", "AU": "0011", "NZ": "00", "US": "011"}
# Allowed lengths of the national significant number (after the country code).
_NSN_LENGTHS: dict[str, range] = {"44": range(9, 11), "61": range(9, 10), "64": range(8, 11)}


def _check(e164: str) -> str:
    if not _E164.fullmatch(e164):
        if e164.startswith("+0"):
            raise InvalidPhoneNumber("a country code never starts with 0")
        if len(e164) > 16:
            raise InvalidPhoneNumber("an E.164 number has at most 15 digits")
        raise InvalidPhoneNumber("an E.164 number is '+' and 2 to 15 digits")
    for code, lengths in _NSN_LENGTHS.items():
        if e164.startswith("+" + code):
            national = e164[1 + len(code) :]
            if national.startswith("0"):
                raise InvalidPhoneNumber(
                    f"drop the trunk 0 after +{code} (write +{code}{national[1:]})"
                )
            if len(national) not in lengths:
                raise InvalidPhoneNumber(f"wrong number of digits for +{code}")
    if e164.startswith("+1") and not _NANP.fullmatch(e164[2:]):
        raise InvalidPhoneNumber(
            "a +1 number has a 3-digit area code and 7 digits, each part 2-9 first"
        )
    return e164


def _from_national(digits: str, region: Region) -> str:
    exit_prefix = _EXIT_PREFIXES.get(region)
    if exit_prefix and digits.startswith(exit_prefix):
        return "+" + digits[len(exit_prefix) :]
    if region == "US":
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        if len(digits) != 10:
            raise InvalidPhoneNumber("a US number has 10 digits")
        return "+1" + digits
    if region == "other":
        raise InvalidPhoneNumber("write numbers from this region in international form (+...)")
    if not digits.startswith("0"):
        raise InvalidPhoneNumber(f"a national {region} number starts with 0")
    return "+" + _CALLING_CODES[region] + digits[1:]


def normalise_phone(text: str, default_region: Region | None = None) -> str:
    """The E.164 form of `text`, or InvalidPhoneNumber.

    Numbers without "+" are read as national numbers of `default_region`.
    """
    raw = text.strip()
    if not raw:
        raise InvalidPhoneNumber("the number is empty")
    if not _ALLOWED.fullmatch(raw):
        raise InvalidPhoneNumber("only digits, a leading '+', spaces, dashes, dots and brackets")
    if raw.startswith("+"):
        # "+44 (0)20 7946 0000": the bracketed trunk 0 is not dialled internationally.
        digits = _SEPARATORS.sub("", raw[1:].replace("(0)", "", 1))
        return _check("+" + digits)
    digits = _SEPARATORS.sub("", raw)
    if default_region is None:
        raise InvalidPhoneNumber("not in international form (+...) and no default region given")
    return _check(_from_national(digits, default_region))


def is_e164(text: str) -> bool:
    """True when `text` is already a valid, normalised E.164 number."""
    try:
        return _check(text) == text
    except InvalidPhoneNumber:
        return False


def region_of(e164: str) -> Region:
    """UK (+44), AU (+61), NZ (+64), US (+1, the whole NANP including Canada) or other."""
    _check(e164)
    for region, code in _CALLING_CODES.items():
        if e164.startswith("+" + code):
            return region
    return "other"


# Countries whose whole territory on this calling code keeps one time. Countries spread over
# several zones (Australia, the US and Canada, Spain with the Canaries, Portugal with the
# Azores, Russia, Brazil, ...) are left out on purpose. New Zealand's Chatham Islands keep their
# own time; their few numbers are not told apart.
_SINGLE_ZONE: dict[str, str] = {
    "27": "Africa/Johannesburg",
    "30": "Europe/Athens",
    "31": "Europe/Amsterdam",
    "32": "Europe/Brussels",
    "33": "Europe/Paris",
    "39": "Europe/Rome",
    "41": "Europe/Zurich",
    "43": "Europe/Vienna",
    "44": "Europe/London",
    "45": "Europe/Copenhagen",
    "46": "Europe/Stockholm",
    "47": "Europe/Oslo",
    "48": "Europe/Warsaw",
    "49": "Europe/Berlin",
    "63": "Asia/Manila",
    "64": "Pacific/Auckland",
    "65": "Asia/Singapore",
    "66": "Asia/Bangkok",
    "81": "Asia/Tokyo",
    "82": "Asia/Seoul",
    "91": "Asia/Kolkata",
    "353": "Europe/Dublin",
    "354": "Atlantic/Reykjavik",
    "356": "Europe/Malta",
    "358": "Europe/Helsinki",
    "679": "Pacific/Fiji",
    "852": "Asia/Hong_Kong",
    "971": "Asia/Dubai",
}

# NANP area codes whose whole area keeps one time. Deliberately short: overlays and codes that
# straddle a zone line (Florida's panhandle, Alaska, British Columbia's overlays) are left out.
_AREA_CODE_ZONES: dict[str, str] = {
    **dict.fromkeys(
        ("202", "212", "215", "305", "347", "404", "617", "646", "718", "917"),
        "America/New_York",
    ),
    **dict.fromkeys(("214", "312", "713", "773"), "America/Chicago"),
    **dict.fromkeys(("303", "720", "801"), "America/Denver"),
    **dict.fromkeys(("480", "602"), "America/Phoenix"),
    **dict.fromkeys(("206", "213", "310", "415", "503", "702"), "America/Los_Angeles"),
    "808": "Pacific/Honolulu",
    "416": "America/Toronto",
    "604": "America/Vancouver",
}


# Cached: the SMS gateway asks for each message twice (at its claim, again just before the
# send), and a recall batch often repeats numbers.
@functools.lru_cache(maxsize=16384)
def timezone_for_number(e164: str, fallback_tz: str) -> str:
    """Best-effort IANA zone of the number's holder, else `fallback_tz` (the site's zone).

    Mobile numbers in multi-zone countries carry no location (an Australian 04 number may be
    anywhere), so only single-zone countries and a short table of NANP area codes answer.
    """
    _check(e164)
    if e164.startswith("+1"):
        return _AREA_CODE_ZONES.get(e164[2:5], fallback_tz)
    for length in (1, 2, 3):
        zone = _SINGLE_ZONE.get(e164[1 : 1 + length])
        if zone is not None:
            return zone
    return fallback_tz
