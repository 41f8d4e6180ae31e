"""STOP confirmations and HELP answers: the site's text, else the region's where it expects
one (the US), else nothing; an empty text switches them off."""

from __future__ import annotations

from shared.domain.auto_replies import MAX_AUTO_REPLY, auto_reply_text


def test_the_us_expects_both_by_default() -> None:
    stop = auto_reply_text("optout", "US", None, "Harbour")
    help_ = auto_reply_text("help", "US", None, "Harbour")
    assert stop is not None and stop.startswith("Harbour: you are unsubscribed")
    assert help_ is not None and "Reply STOP" in help_


def test_elsewhere_nothing_unless_the_site_sets_a_text() -> None:
    for region in ("UK", "AU", "NZ", "other"):
        assert auto_reply_text("optout", region, None, "Harbour") is None  # type: ignore[arg-type]
        assert auto_reply_text("help", region, None, "Harbour") is None  # type: ignore[arg-type]
    assert auto_reply_text("help", "UK", "{site}: call 020 7946 0000", "Harbour") == (
        "Harbour: call 020 7946 0000"
    )


def test_an_empty_text_switches_it_off_even_in_the_us() -> None:
    assert auto_reply_text("optout", "US", "", "Harbour") is None
    assert auto_reply_text("optout", "US", "   ", "Harbour") is None


def test_only_stop_and_help_are_answered() -> None:
    for kind in ("optin", "keyword", "unmatched"):
        assert auto_reply_text(kind, "US", "text", "Harbour") is None


def test_a_long_site_name_cannot_make_it_longer_than_two_segments() -> None:
    text = auto_reply_text("optout", "US", None, "X" * 400)
    assert text is not None and len(text) == MAX_AUTO_REPLY
