"""SMS segment counting: GSM 03.38 (7-bit, with its extension table) or UCS-2.

* Every character in the pinned basic table costs one septet; the extension table characters
  (form feed ^ { } \\ [ ~ ] | €) are sent as ESC + code and cost two. An escape pair is never
  split across segments.
* One character outside GSM-7 (a smart quote, an em dash, an emoji) switches the WHOLE message
  to UCS-2, counted in UTF-16 code units: characters beyond U+FFFF (most emoji) take two, and a
  surrogate pair is never split across segments.
* A single message holds 160 septets or 70 units; past that every segment carries a 6-octet
  concatenation header and holds 153 septets or 67 units.
* An empty message counts as one segment: providers bill an empty SMS as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

# GSM 03.38 basic character set, code points 0x00-0x7F in order. 0x1B is the escape to the
# extension table (not a character). 0x09 is CAPITAL C with cedilla: some counters wrongly
# use the small letter, so this table is pinned and tested.
GSM_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Extension table characters (each sent as ESC + one septet).
GSM_EXTENSION_TABLE = "\f^{}\\[~]|€"

_BASIC = frozenset(GSM_BASIC_TABLE) - {"\x1b"}
_EXTENSION = frozenset(GSM_EXTENSION_TABLE)

GSM_SINGLE, GSM_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SegmentCount:
    """How a text travels: encoding, segments and room left in the last segment.

    `units` are septets for GSM-7 (extension characters count 2) and UTF-16 code units for
    UCS-2. `characters` counts Unicode code points. `non_gsm` lists, once each and in order of
    appearance, the characters that forced UCS-2.
    """

    encoding: Encoding
    segments: int
    units: int
    characters: int
    per_segment: int
    remaining_in_segment: int
    non_gsm: tuple[str, ...]


def _pack(costs: list[int], single: int, multi: int) -> tuple[int, int, int]:
    """(segments, per_segment, remaining) for unsplittable items of the given costs."""
    total = sum(costs)
    if total <= single:
        return 1, single, single - total
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return segments, multi, multi - used


def _uniform(units: int, single: int, multi: int) -> tuple[int, int, int]:
    # Every item costs one unit, so no pair can straddle a boundary: plain arithmetic.
    if units <= single:
        return 1, single, single - units
    segments = -(-units // multi)
    return segments, multi, segments * multi - units


def count_segments(text: str) -> SegmentCount:
    """Encoding and segment count of `text` as an SMS (see module docstring)."""
    used = set(text)
    if used <= _BASIC:
        # The common case (plain GSM text): one septet per character, counted without a walk.
        segments, per_segment, remaining = _uniform(len(text), GSM_SINGLE, GSM_MULTI)
        return SegmentCount("GSM-7", segments, len(text), len(text), per_segment, remaining, ())
    non_gsm = tuple(dict.fromkeys(ch for ch in text if ch not in _BASIC and ch not in _EXTENSION))
    if not non_gsm:
        costs = [2 if ch in _EXTENSION else 1 for ch in text]
        encoding: Encoding = "GSM-7"
        segments, per_segment, remaining = _pack(costs, GSM_SINGLE, GSM_MULTI)
    else:
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        encoding = "UCS-2"
        segments, per_segment, remaining = _pack(costs, UCS2_SINGLE, UCS2_MULTI)
    return SegmentCount(
        encoding=encoding,
        segments=segments,
        units=sum(costs),
        characters=len(text),
        per_segment=per_segment,
        remaining_in_segment=remaining,
        non_gsm=non_gsm,
    )


def cost(segments: int, credits_per_segment: Decimal) -> Decimal:
    """Price of `segments` segments (per recipient) at `credits_per_segment` each."""
    if segments < 0:
        raise ValueError("segments must not be negative")
    if credits_per_segment < 0:
        raise ValueError("credits_per_segment must not be negative")
    return credits_per_segment * segments


# Typographic characters that word processors and phones put in templates, with the plain
# GSM-7 characters that read the same.
_LOOKALIKES = {
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark / apostrophe
    "\u201a": "'",  # single low-9 quotation mark
    "\u201b": "'",  # single high-reversed-9 quotation mark
    "\u2032": "'",  # prime
    "\u201c": '"',  # left double quotation mark
    "\u201d": '"',  # right double quotation mark
    "\u201e": '"',  # double low-9 quotation mark
    "\u201f": '"',  # double high-reversed-9 quotation mark
    "\u2033": '"',  # double prime
    "\u00ab": '"',  # left-pointing double angle quotation mark
    "\u00bb": '"',  # right-pointing double angle quotation mark
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2026": "...",  # horizontal ellipsis
    "\u00a0": " ",  # no-break space
    "\u2002": " ",  # en space
    "\u2003": " ",  # em space
    "\u2009": " ",  # thin space
    "\u202f": " ",  # narrow no-break space
    "\u200b": "",  # zero-width space
    "\u2022": "-",  # bullet
}
_LOOKALIKE_TABLE = str.maketrans(_LOOKALIKES)


def gsm_lookalike_replacements(text: str) -> str:
    """`text` with common smart quotes, dashes, ellipsis and odd spaces made GSM-7."""
    return text.translate(_LOOKALIKE_TABLE)
