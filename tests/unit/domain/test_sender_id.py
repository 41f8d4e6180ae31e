from __future__ import annotations

import pytest

from shared.domain.sender_id import InvalidSenderId, SenderId, parse_sender_id, sender_warnings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SmileDental", SenderId("alpha", "SmileDental")),
        ("Smile Dent", SenderId("alpha", "Smile Dent")),
        ("A&B-Dent_1+", SenderId("alpha", "A&B-Dent_1+")),
        ("  Dentist  ", SenderId("alpha", "Dentist")),
        ("+44 7700 900123", SenderId("number", "+447700900123")),
        ("3456", SenderId("short_code", "3456")),
        ("226", SenderId("short_code", "226")),
    ],
)
def test_parse(text: str, expected: SenderId) -> None:
    assert parse_sender_id(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("SmileDental1", "at most 11"),
        ("Smile.Dent", "only A-Z"),
        ("Dent\u00e9", "only A-Z"),
        ("12", "short code"),
        ("1234567", "short code"),
        ("12-34", "at least one letter"),
        ("+44 07700 900123", "trunk 0"),
    ],
)
def test_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidSenderId, match=reason):
        parse_sender_id(text)


def test_replies() -> None:
    assert not SenderId("alpha", "Smile").can_receive_replies
    assert SenderId("number", "+447700900123").can_receive_replies
    assert SenderId("short_code", "3456").can_receive_replies


def test_warnings_by_region() -> None:
    alpha = SenderId("alpha", "Smile")
    number = SenderId("number", "+447700900123")
    short = SenderId("short_code", "3456")
    assert len(sender_warnings(alpha, "UK")) == 1
    assert "cannot reply" in sender_warnings(alpha, "UK")[0]
    assert sender_warnings(number, "UK") == []
    au = " ".join(sender_warnings(alpha, "AU"))
    assert "1 July 2026" in au
    assert "Sender ID Register" in au
    assert sender_warnings(number, "AU") == []
    assert any("short code" in w for w in sender_warnings(number, "NZ"))
    assert sender_warnings(short, "NZ") == []
    assert any("replace alphanumeric" in w for w in sender_warnings(alpha, "US"))
    assert any("10DLC" in w for w in sender_warnings(number, "US"))
