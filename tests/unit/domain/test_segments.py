from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.segments import (
    GSM_BASIC_TABLE,
    GSM_EXTENSION_TABLE,
    cost,
    count_segments,
    gsm_lookalike_replacements,
)

EMOJI = "\U0001f600"  # one code point, two UTF-16 units


def test_basic_table_is_pinned() -> None:
    assert len(GSM_BASIC_TABLE) == 128
    assert GSM_BASIC_TABLE[0x09] == "\u00c7"  # CAPITAL C with cedilla, not the small letter
    assert GSM_BASIC_TABLE[0x00] == "@"
    assert GSM_BASIC_TABLE[0x02] == "$"
    assert GSM_BASIC_TABLE[0x1B] == "\x1b"  # escape to the extension table
    assert GSM_BASIC_TABLE[0x24] == "\u00a4"
    assert GSM_BASIC_TABLE[0x40] == "\u00a1"
    assert GSM_BASIC_TABLE[0x7F] == "\u00e0"
    assert sorted(GSM_EXTENSION_TABLE) == sorted("\f^{}\\[~]|\u20ac")


def test_small_c_cedilla_is_not_gsm() -> None:
    count = count_segments("Fran\u00e7ois")
    assert count.encoding == "UCS-2"
    assert count.non_gsm == ("\u00e7",)
    assert count_segments("FRAN\u00c7OIS").encoding == "GSM-7"


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "units", "remaining"),
    [
        ("", "GSM-7", 1, 0, 160),  # billed as one segment
        ("a" * 160, "GSM-7", 1, 160, 0),
        ("a" * 161, "GSM-7", 2, 161, 145),  # 153 + 8
        ("a" * 306, "GSM-7", 2, 306, 0),  # 153 * 2
        ("a" * 307, "GSM-7", 3, 307, 152),
        ("\u20ac" * 80, "GSM-7", 1, 160, 0),  # each euro is ESC + code
        # 76 euros fill 152 septets; the 77th pair moves on: segment 2 holds 4 pairs and "a".
        ("\u20ac" * 80 + "a", "GSM-7", 2, 161, 144),
        ("a" * 158 + "[", "GSM-7", 1, 160, 0),
        ("a" * 159 + "[", "GSM-7", 2, 161, 145),
        # 152 septets then an escape pair: the pair cannot straddle, so segment 1 holds 152.
        ("a" * 152 + "{" + "a" * 10, "GSM-7", 2, 164, 141),
        # Exactly 153 then the pair: segment 2 starts with it.
        ("a" * 153 + "{" + "a" * 10, "GSM-7", 2, 165, 141),
        ("a" * 153 + "{", "GSM-7", 1, 155, 5),  # still fits a single message
        # Segment 2 ends at 305 septets; a pair there moves to segment 3.
        ("a" * 305 + "|", "GSM-7", 3, 307, 151),
        ("a" * 304 + "|", "GSM-7", 2, 306, 0),
        ("\u00ea" * 70, "UCS-2", 1, 70, 0),  # e with circumflex is not GSM-7 (e acute is)
        ("\u00ea" * 71, "UCS-2", 2, 71, 63),  # 67 + 4
        ("\u00ea" * 134, "UCS-2", 2, 134, 0),
        ("\u00ea" * 135, "UCS-2", 3, 135, 66),
        (EMOJI * 35, "UCS-2", 1, 70, 0),
        # 33 emoji fill 66 units; the 34th cannot split, so segment 2 holds 2 emoji and "a".
        (EMOJI * 35 + "a", "UCS-2", 2, 71, 62),
        # 66 units then an emoji: the surrogate pair moves whole to segment 2.
        ("\u00ea" * 66 + EMOJI + "a" * 5, "UCS-2", 2, 73, 60),
        ("\u00ea" * 65 + EMOJI + "a" * 5, "UCS-2", 2, 72, 62),
    ],
)
def test_segment_boundaries(
    text: str, encoding: str, segments: int, units: int, remaining: int
) -> None:
    count = count_segments(text)
    assert (count.encoding, count.segments, count.units, count.remaining_in_segment) == (
        encoding,
        segments,
        units,
        remaining,
    )
    expected_per_segment = {
        ("GSM-7", True): 160,
        ("GSM-7", False): 153,
        ("UCS-2", True): 70,
        ("UCS-2", False): 67,
    }
    assert count.per_segment == expected_per_segment[encoding, segments == 1]


def test_mixed_text_lists_offending_characters_once_in_order() -> None:
    text = "\u201cHi Jo\u201d \u2013 check-up Mon 09:00. Reply YES \U0001f44d \u201cthanks\u201d"
    count = count_segments(text)
    assert count.encoding == "UCS-2"
    assert count.non_gsm == ("\u201c", "\u201d", "\u2013", "\U0001f44d")
    assert count.characters == len(text)
    assert count.units == len(text) + 1  # the emoji is two units


def test_extension_characters_each_cost_two() -> None:
    for ch in GSM_EXTENSION_TABLE:
        assert count_segments(ch).units == 2
        assert count_segments(ch).encoding == "GSM-7"


def test_lookalikes_make_text_gsm() -> None:
    text = "\u201cDon\u2019t forget\u201d \u2013 Tue\u2026 see\u00a0you"
    fixed = gsm_lookalike_replacements(text)
    assert fixed == '"Don\'t forget" - Tue... see you'
    assert count_segments(fixed).encoding == "GSM-7"


def test_cost() -> None:
    assert cost(3, Decimal("0.045")) == Decimal("0.135")
    assert cost(0, Decimal("1")) == 0
    with pytest.raises(ValueError, match="negative"):
        cost(-1, Decimal("1"))


@given(
    st.text(
        alphabet=st.sampled_from(list(GSM_BASIC_TABLE.replace("\x1b", "") + GSM_EXTENSION_TABLE))
    )
)
def test_gsm_segments_never_split_a_pair_and_fit(text: str) -> None:
    count = count_segments(text)
    assert count.encoding == "GSM-7"
    assert count.units == len(text) + sum(ch in GSM_EXTENSION_TABLE for ch in text)
    if count.units <= 160:
        assert count.segments == 1
    else:
        # Greedy packing of items of size 1 or 2 loses at most one septet per segment.
        assert count.segments * 153 >= count.units
        assert (count.segments - 1) * 152 < count.units


@given(st.text(min_size=1))
def test_any_text_is_counted_consistently(text: str) -> None:
    count = count_segments(text)
    assert count.characters == len(text)
    assert count.segments >= 1
    assert 0 <= count.remaining_in_segment <= count.per_segment
    if count.encoding == "UCS-2":
        assert count.units == len(text.encode("utf-16-le")) // 2
        assert count.non_gsm
