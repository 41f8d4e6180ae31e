"""Consent categories: the pure opt-out rules (`shared.domain.consent`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.consent import (
    Consent,
    default_category,
    message_category,
    normalise_phrase,
    optout_scope,
    phrase_category,
)

CATEGORIES = ["service", "marketing", "newsletter"]
category = st.sampled_from(CATEGORIES)
# An event: ("out" | "in", a category or None for STOP / START).
event = st.tuples(st.sampled_from(["out", "in"]), st.none() | category)


def fold(events: list[tuple[str, str | None]], start: Consent | None = None) -> Consent:
    consent = start or Consent()
    for kind, which in events:
        consent = consent.opted_out(which) if kind == "out" else consent.opted_in(which)
    return consent


def reference(events: list[tuple[str, str | None]], c: str) -> bool:
    """Blocked? Straight from the rules: the latest event that covers `c` decides."""
    for kind, which in reversed(events):
        if which is None or which == c:
            return kind == "out"
    return False


@given(st.lists(event, max_size=12))
def test_the_latest_event_covering_a_category_decides(events: list) -> None:
    consent = fold(events)
    assert {c: consent.blocks(c) for c in CATEGORIES} == {
        c: reference(events, c) for c in CATEGORIES
    }


@given(st.lists(event, max_size=12))
def test_stop_ends_every_category_and_start_restores_every_one(events: list) -> None:
    stopped = fold([*events, ("out", None)])
    assert all(stopped.blocks(c) for c in [*CATEGORIES, "added_later"])
    started = fold([*events, ("out", None), ("in", None)])
    assert not any(started.blocks(c) for c in [*CATEGORIES, "added_later"])
    assert started.empty


@given(st.lists(event, max_size=12), category)
def test_a_category_opt_out_touches_that_category_only(events: list, which: str) -> None:
    before = fold(events)
    after = before.opted_out(which)
    assert after.blocks(which)
    for other in CATEGORIES:
        if other != which:
            assert after.blocks(other) == before.blocks(other)


def test_marketing_opt_out_leaves_reminders_and_opting_back_in_after_stop_is_per_category() -> None:
    marketing_out = Consent().opted_out("marketing")
    assert marketing_out.blocks("marketing") and not marketing_out.blocks("service")
    back = Consent().opted_out(None).opted_in("service")
    assert not back.blocks("service") and back.blocks("marketing") and back.blocks("new")


def test_per_category_opt_outs_only_where_the_region_allows() -> None:
    assert [optout_scope(r, "marketing") for r in ("UK", "AU", "NZ")] == ["marketing"] * 3
    assert optout_scope("US", "marketing") is None
    assert optout_scope("other", "marketing") is None
    assert optout_scope("UK", None) is None


def test_default_category_follows_the_kind_and_the_groups_list() -> None:
    defaults = ["service", "marketing"]
    assert default_category("reminder", defaults) == "service"
    assert default_category("recall", defaults) == "marketing"
    assert default_category("contact_list", defaults) == "marketing"
    assert default_category("other", defaults) == "service"
    assert default_category("recall", ["care", "news"]) == "care"
    assert message_category("news", "reminder", ["care", "news"]) == "news"
    assert message_category(None, "recall", defaults) == "marketing"


def test_phrases_ignore_case_spacing_and_trailing_punctuation() -> None:
    phrases = {"marketing": ["STOP RECALLS"]}
    assert phrase_category("  stop   recalls! ", phrases) == "marketing"
    assert phrase_category("stop", phrases) is None
    assert phrase_category("stop recalls please", phrases) is None
    assert phrase_category("", phrases) is None
    assert normalise_phrase("Stop  Marketing.") == "STOP MARKETING"
