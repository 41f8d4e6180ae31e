from __future__ import annotations

import pytest

from shared.domain.keywords import (
    DEFAULT_HELP,
    DEFAULT_OPT_IN,
    DEFAULT_OPT_OUT,
    MAX_KEYWORD_LENGTH,
    DuplicateKeyword,
    InvalidKeyword,
    ReplyClass,
    classify_reply,
    default_reply_keywords,
    normalise_keyword,
    validate_keyword,
    validate_keywords,
)
from shared.domain.regions import Region

REGIONS: tuple[Region, ...] = ("UK", "AU", "NZ", "US", "other")


def test_normalise_and_validate() -> None:
    assert normalise_keyword("  yes1 ") == "YES1"
    assert validate_keyword("Yes1") == "YES1"
    assert validate_keyword("A" * MAX_KEYWORD_LENGTH) == "A" * 24


@pytest.mark.parametrize(
    ("word", "reason"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ("YES PLEASE", "no spaces"),
        ("YES!", "letters A-Z and digits"),
        ("OPT-OUT", "letters A-Z and digits"),
        ("ÉTÉ", "letters A-Z and digits"),
        ("A" * 25, "fewer than 25"),
    ],
)
def test_invalid_keywords(word: str, reason: str) -> None:
    with pytest.raises(InvalidKeyword, match=reason) as caught:
        validate_keyword(word)
    assert caught.value.keyword == word


def test_keywords_are_unique_ignoring_case() -> None:
    assert validate_keywords(["yes", "YES1", "no"]) == ("YES", "YES1", "NO")
    with pytest.raises(DuplicateKeyword) as caught:
        validate_keywords(["YES", "no", "Yes"])
    assert caught.value.keyword == "Yes"
    with pytest.raises(DuplicateKeyword, match="reserved") as reserved:
        validate_keywords(["CONFIRM", "stop"], reserved=DEFAULT_OPT_OUT["UK"])
    assert reserved.value.keyword == "stop"


def test_cancel_is_opt_out_only_in_the_us() -> None:
    assert "CANCEL" in DEFAULT_OPT_OUT["US"]
    for region in ("UK", "AU", "NZ", "other"):
        assert "CANCEL" not in DEFAULT_OPT_OUT[region]
        assert default_reply_keywords(region)["CANCEL"] == "cancel"
    assert "CANCEL" not in default_reply_keywords("US")


def test_default_sets_are_frozen_and_cover_every_region() -> None:
    for table in (DEFAULT_OPT_OUT, DEFAULT_OPT_IN, DEFAULT_HELP):
        assert set(table) == set(REGIONS)
        assert all(isinstance(words, frozenset) for words in table.values())
        with pytest.raises(TypeError):
            table["UK"] = frozenset()  # type: ignore[index]
    for region in REGIONS:
        assert "STOP" in DEFAULT_OPT_OUT[region]
        assert "START" in DEFAULT_OPT_IN[region]
        assert "HELP" in DEFAULT_HELP[region]
        # Defaults never clash with each other or with the suggested reply keywords.
        sets = [
            DEFAULT_OPT_OUT[region],
            DEFAULT_OPT_IN[region],
            DEFAULT_HELP[region],
            set(default_reply_keywords(region)),
        ]
        assert sum(len(s) for s in sets) == len(set().union(*sets))
        validate_keywords(
            default_reply_keywords(region),
            reserved=DEFAULT_OPT_OUT[region] | DEFAULT_OPT_IN[region],
        )


def classify(text: str, region: Region) -> ReplyClass:
    return classify_reply(
        text,
        region,
        DEFAULT_OPT_OUT[region],
        DEFAULT_OPT_IN[region],
        default_reply_keywords(region),
    )


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("STOP", "UK", ReplyClass("optout", "STOP")),
        ("  stop. ", "AU", ReplyClass("optout", "STOP")),
        ("Stop!!", "NZ", ReplyClass("optout", "STOP")),
        ("unsubscribe", "other", ReplyClass("optout", "UNSUBSCRIBE")),
        ("start", "UK", ReplyClass("optin", "START")),
        ("help?", "US", ReplyClass("help", "HELP")),
        ("Yes", "UK", ReplyClass("keyword", "YES", "confirm")),
        ("y", "AU", ReplyClass("keyword", "Y", "confirm")),
        ("CANCEL", "UK", ReplyClass("keyword", "CANCEL", "cancel")),
        ("cancel.", "AU", ReplyClass("keyword", "CANCEL", "cancel")),
        ("CANCEL", "US", ReplyClass("optout", "CANCEL")),
        ("no", "US", ReplyClass("keyword", "NO", "cancel")),
        # More than one word: a person reads it.
        ("STOP please", "UK", ReplyClass("unmatched")),
        ("YES but I'll be five minutes late", "UK", ReplyClass("unmatched")),
        ("NO WORRIES MATE", "AU", ReplyClass("unmatched")),
        ("", "UK", ReplyClass("unmatched")),
        ("...", "UK", ReplyClass("unmatched")),
        ("maybe", "UK", ReplyClass("unmatched")),
    ],
)
def test_classify_reply(text: str, region: Region, expected: ReplyClass) -> None:
    assert classify(text, region) == expected


def test_us_carrier_words_win_even_if_a_practice_removes_them() -> None:
    got = classify_reply(
        "cancel", "US", optout_words=[], optin_words=[], reply_keywords={"cancel": "cancel"}
    )
    assert got == ReplyClass("optout", "CANCEL")
    elsewhere = classify_reply(
        "cancel", "UK", optout_words=[], optin_words=[], reply_keywords={"cancel": "cancel"}
    )
    assert elsewhere == ReplyClass("keyword", "CANCEL", "cancel")


def test_opt_out_wins_over_a_clashing_reply_keyword() -> None:
    got = classify_reply("STOP", "UK", ["STOP"], [], {"stop": "cancel"})
    assert got.kind == "optout"


def test_custom_help_words() -> None:
    got = classify_reply("info", "UK", [], [], {}, help_words=["AIDE"])
    assert got == ReplyClass("unmatched")
    assert classify_reply("aide", "UK", [], [], {}, help_words=["AIDE"]) == ReplyClass(
        "help", "AIDE"
    )
