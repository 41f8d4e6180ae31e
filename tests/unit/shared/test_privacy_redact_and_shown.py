"""Addresses taken out of providers' free text, and the masked form staff without the right to
read a recipient see (shared.privacy.redact, shared.privacy.shown)."""

from __future__ import annotations

import pytest

from shared.privacy.redact import optional, without_addresses
from shared.privacy.shown import is_tag, masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Providers that echo the destination in a receipt's status or error.
        ("DELIVRD to 61412345678", "DELIVRD to <recipient>"),
        ("Failed: +64 21 123 4567 is not reachable", "Failed: <recipient> is not reachable"),
        ("undeliverable (447700900123)", "undeliverable (<recipient>)"),
        ("550 5.1.1 <nobody@example.org>: user unknown", "550 5.1.1 <recipient>: user unknown"),
        ("bounced: Jane.Doe+recall@mail.example.co.uk", "bounced: <recipient>"),
        # Status words, codes, SMTP enhanced codes, dates and times stay.
        ("delivered 000", "delivered 000"),
        ("failed 5.1.1", "failed 5.1.1"),
        ("Vonage error 29", "Vonage error 29"),
        ("at 2026-12-07 10:00:00", "at 2026-12-07 10:00:00"),
        ("id 9f3a2b1c-77", "id 9f3a2b1c-77"),
    ],
)
def test_without_addresses(text: str, expected: str) -> None:
    assert without_addresses(text) == expected


def test_optional_keeps_none() -> None:
    assert optional(None) is None
    assert optional("to 61412345678") == "to <recipient>"


def test_masked_shows_enough_to_recognise_and_no_more() -> None:
    assert masked("+61412345678") == "+61••••••678"
    assert masked("jane@example.com") == "j•••@example.com"
    assert masked("0412") == "•••"
    assert masked("erased") == "erased"
    tag = "0123456789abcdef" * 2
    assert is_tag(tag) and masked(tag) == tag
    assert masked(f"pd1:{tag}.id.0:AAAA") == tag, "a value that did not open shows its hash"
    assert not is_tag("+61412345678") and not is_tag(tag.upper())
