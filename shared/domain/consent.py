"""Consent categories: which of a group's messages a recipient still agrees to receive.

Pure rules, no I/O. Every message has a consent category (by default `service` for
appointment reminders and `marketing` for recalls and newsletters; the list is set per group).
A recipient's consent on a channel is the fold of their opt-out and opt-in events:

- an opt-out naming no category (STOP) ends every category, including ones added later;
- an opt-in naming no category (START) restores every category;
- an opt-out naming a category ends that category only, where the region allows it (UK, AU,
  NZ: their laws regulate commercial messages apart from service messages); elsewhere it is
  widened to every category, because a US carrier blocks the whole number on STOP and the FCC
  treats a revocation of consent as covering every message from the sender;
- an opt-in naming a category restores that category only (after STOP, only that one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.domain.regions import Region

SERVICE = "service"
MARKETING = "marketing"
DEFAULT_CATEGORIES: tuple[str, ...] = (SERVICE, MARKETING)
"""A group's consent categories unless it sets its own."""

PER_CATEGORY_REGIONS: frozenset[Region] = frozenset({"UK", "AU", "NZ"})
"""Regions where an opt-out may end one category and leave the others."""

KIND_CATEGORY: Mapping[str, str] = {
    "reminder": SERVICE,
    "manual": SERVICE,
    "other": SERVICE,
    "recall": MARKETING,
    "contact_list": MARKETING,
    "marketing": MARKETING,
}
"""The consent category a message of each kind (`MessageAccepted.category`) gets by default."""

DEFAULT_CATEGORY_PHRASES: Mapping[str, tuple[str, ...]] = {
    MARKETING: ("STOP RECALLS", "STOP MARKETING"),
}
"""Reply phrases that end one category only (a group may set its own)."""


def default_category(kind: str, categories: Iterable[str]) -> str:
    """The category of a message of this kind that names none: the kind's usual category if
    the group has it, else the group's first category."""
    listed = list(categories)
    usual = KIND_CATEGORY.get(kind, SERVICE)
    if usual in listed or not listed:
        return usual
    return listed[0]


def optout_scope(region: Region, category: str | None) -> str | None:
    """The category an opt-out ends (None = every category) in this region."""
    if category is None or region not in PER_CATEGORY_REGIONS:
        return None
    return category


def normalise_phrase(text: str) -> str:
    """A reply or configured phrase compared ignoring case, spacing and trailing punctuation."""
    return " ".join(text.upper().split()).rstrip(".!?,;: ")


def phrase_category(text: str, phrases: Mapping[str, Iterable[str]]) -> str | None:
    """The category whose opt-out phrase the reply is, if any."""
    said = normalise_phrase(text)
    if not said:
        return None
    for category, words in phrases.items():
        if any(normalise_phrase(w) == said for w in words):
            return category
    return None


@dataclass(frozen=True)
class Consent:
    """One recipient's consent on one channel to one group's messages."""

    all_out: bool = False
    """STOP: every category ended (except those in `back_in`)."""
    out: frozenset[str] = field(default_factory=frozenset)
    """Categories ended one by one."""
    back_in: frozenset[str] = field(default_factory=frozenset)
    """Categories opted back into since STOP."""

    def blocks(self, category: str) -> bool:
        """True if a message of this category must not be sent."""
        return category in self.out or (self.all_out and category not in self.back_in)

    @property
    def empty(self) -> bool:
        """True if nothing is blocked (the recipient need not be remembered)."""
        return not self.all_out and not self.out

    def opted_out(self, category: str | None) -> Consent:
        """After an opt-out of `category` (None = STOP, every category)."""
        if category is None:
            return Consent(all_out=True)
        return Consent(self.all_out, self.out | {category}, self.back_in - {category})

    def opted_in(self, category: str | None) -> Consent:
        """After an opt-in to `category` (None = START, every category)."""
        if category is None:
            return Consent()
        back_in = self.back_in | {category} if self.all_out else self.back_in
        return Consent(self.all_out, self.out - {category}, back_in)

    def describe(self) -> str:
        """What the recipient opted out of, for people ("every category", "marketing",
        "every category but service")."""
        if self.all_out:
            kept = sorted(self.back_in - self.out)
            return "every category" + (f" but {', '.join(kept)}" if kept else "")
        return ", ".join(sorted(self.out))


def message_category(given: str | None, kind: str, categories: Iterable[str]) -> str:
    """A message's consent category: the one it carries, else (stored before categories
    existed) the default for its kind."""
    return given if given is not None else default_category(kind, categories)
