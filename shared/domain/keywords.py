"""SMS reply keywords: validation, default opt-out/opt-in/help sets, and reply classification.

Keyword rules (as in the practice-management product Stagger re-creates): letters and digits
only, no spaces, not blank, fewer than 25 characters, case-insensitive, unique across every
active list. Only a reply that is ONE word (after trimming and dropping trailing punctuation)
is acted on; anything longer goes to a person, as carriers do for STOP.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from shared.domain.regions import Region

MAX_KEYWORD_LENGTH = 24  # "less than 25 characters"
_KEYWORD = re.compile(r"[A-Z0-9]+")
_TRAILING = string.punctuation + string.whitespace


class InvalidKeyword(ValueError):
    """`keyword` breaks a keyword rule; `reason` says which."""

    def __init__(self, keyword: str, reason: str) -> None:
        super().__init__(f"{keyword!r}: {reason}")
        self.keyword = keyword
        self.reason = reason


class DuplicateKeyword(InvalidKeyword):
    """`keyword` appears twice (ignoring case) or clashes with a reserved word."""


def normalise_keyword(word: str) -> str:
    """Canonical form of a keyword: trimmed and upper case."""
    return word.strip().upper()


def validate_keyword(word: str) -> str:
    """The normalised keyword, or InvalidKeyword."""
    keyword = normalise_keyword(word)
    if not keyword:
        raise InvalidKeyword(word, "a keyword must not be blank")
    if any(ch.isspace() for ch in keyword):
        raise InvalidKeyword(word, "a keyword is one word, with no spaces")
    if not _KEYWORD.fullmatch(keyword):
        raise InvalidKeyword(word, "a keyword has only letters A-Z and digits 0-9")
    if len(keyword) > MAX_KEYWORD_LENGTH:
        raise InvalidKeyword(word, f"a keyword has fewer than {MAX_KEYWORD_LENGTH + 1} characters")
    return keyword


def validate_keywords(words: Iterable[str], reserved: Iterable[str] = ()) -> tuple[str, ...]:
    """Normalised keywords, in order; DuplicateKeyword names the first repeat or reserved word.

    Pass every active list's keywords together: uniqueness spans all of them.
    """
    taken = {normalise_keyword(word) for word in reserved}
    seen: set[str] = set()
    result: list[str] = []
    for word in words:
        keyword = validate_keyword(word)
        if keyword in seen:
            raise DuplicateKeyword(word, "this keyword is already used (keywords ignore case)")
        if keyword in taken:
            raise DuplicateKeyword(word, "this word is reserved for opt-out, opt-in or help")
        seen.add(keyword)
        result.append(keyword)
    return tuple(result)


# Twilio's default opt-out words. US carriers and Twilio act on them before we ever see the
# reply (the number is blocked, later sends fail with error 21610), so in the US they always
# mean opt-out, whatever a practice configures.
US_CARRIER_OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})

# CANCEL: in the US it is an opt-out word (above), so a patient who replies CANCEL to a
# reminder is unsubscribed by the carrier, not their appointment. Elsewhere nothing filters it,
# and dental patients use it to cancel appointments (HotDoc treats "cancel" that way), so
# outside the US it is a reply keyword, not an opt-out: turning a cancellation into a silent
# unsubscribe would lose the patient's message and every later reminder.
_OPT_OUT_COMMON = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "OPTOUT"})
DEFAULT_OPT_OUT: Mapping[Region, frozenset[str]] = MappingProxyType(
    {
        "US": US_CARRIER_OPT_OUT | {"OPTOUT", "REMOVE"},
        "UK": _OPT_OUT_COMMON,
        "AU": _OPT_OUT_COMMON,
        "NZ": _OPT_OUT_COMMON,
        "other": _OPT_OUT_COMMON,
    }
)
# Twilio also re-subscribes on YES, but YES is how patients confirm appointments, so it is not
# a default opt-in word here: a reply YES from an opted-out number goes to a person.
_OPT_IN = frozenset({"START", "UNSTOP"})
DEFAULT_OPT_IN: Mapping[Region, frozenset[str]] = MappingProxyType(
    dict.fromkeys(("US", "UK", "AU", "NZ", "other"), _OPT_IN)
)
_HELP = frozenset({"HELP", "INFO"})
DEFAULT_HELP: Mapping[Region, frozenset[str]] = MappingProxyType(
    dict.fromkeys(("US", "UK", "AU", "NZ", "other"), _HELP)
)

_CONFIRM = ("YES", "Y", "YEAH", "YIP", "YAH", "OK")


def default_reply_keywords(region: Region) -> dict[str, str]:
    """Suggested appointment-reply keywords and their meaning ("confirm" or "cancel")."""
    cancel = ["NO", "N"] if region == "US" else ["NO", "N", "CANCEL"]
    return {**dict.fromkeys(_CONFIRM, "confirm"), **dict.fromkeys(cancel, "cancel")}


ReplyKind = Literal["optout", "optin", "help", "keyword", "unmatched"]


@dataclass(frozen=True)
class ReplyClass:
    """What a reply asks for; `keyword` is the matched word, `meaning` a reply keyword's value."""

    kind: ReplyKind
    keyword: str | None = None
    meaning: str | None = None


def single_word(text: str) -> str | None:
    """The reply as one normalised word, or None if it is empty or more than one word."""
    word = text.strip().rstrip(_TRAILING)
    if not word or any(ch.isspace() for ch in word):
        return None
    return word.upper()


def classify_reply(
    text: str,
    region: Region,
    optout_words: Iterable[str],
    optin_words: Iterable[str],
    reply_keywords: Mapping[str, str],
    help_words: Iterable[str] | None = None,
) -> ReplyClass:
    """Classify an inbound SMS: opt-out, opt-in, help, a reply keyword, or unmatched.

    Order of precedence: opt-out, opt-in, help, then reply keywords, so a clash can only ever
    err towards honouring an opt-out. `help_words` defaults to the region's help set.
    """
    word = single_word(text)
    if word is None:
        return ReplyClass("unmatched")
    if region == "US" and word in US_CARRIER_OPT_OUT:
        return ReplyClass("optout", word)
    if word in {normalise_keyword(w) for w in optout_words}:
        return ReplyClass("optout", word)
    if word in {normalise_keyword(w) for w in optin_words}:
        return ReplyClass("optin", word)
    helps = DEFAULT_HELP[region] if help_words is None else help_words
    if word in {normalise_keyword(w) for w in helps}:
        return ReplyClass("help", word)
    for keyword, meaning in reply_keywords.items():
        if normalise_keyword(keyword) == word:
            return ReplyClass("keyword", word, meaning)
    return ReplyClass("unmatched")
