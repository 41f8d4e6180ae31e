"""The consent section of the settings: a group's consent categories and the reply phrases that
end one category only (`shared.domain.consent` holds the rules).

Group-wide: opt-outs apply to every site of a group, so a site cannot override this section.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from shared.domain.consent import DEFAULT_CATEGORIES, DEFAULT_CATEGORY_PHRASES, normalise_phrase
from shared.domain.settings_fields import Strict

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
MAX_PHRASE_WORDS = 4


class ConsentSettings(Strict):
    """Consent categories of a group's messages."""

    categories: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CATEGORIES),
        description="Consent categories a message may have; the first is the default for a "
        "message whose kind has no usual category here.",
    )
    optout_phrases: dict[str, list[str]] | None = Field(
        default=None,
        description="Category → SMS replies that end that category only (e.g. marketing: "
        "STOP RECALLS); unset = STOP RECALLS and STOP MARKETING for marketing.",
    )

    @field_validator("categories")
    @classmethod
    def _categories(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("a group needs at least one consent category")
        for name in names:
            if not _NAME.match(name):
                raise ValueError(f"category {name!r} must be lowercase letters, digits or _")
        if len(set(names)) != len(names):
            raise ValueError("a category is listed twice")
        return names

    @field_validator("optout_phrases")
    @classmethod
    def _phrases(cls, mapping: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if mapping is None:
            return None
        seen: set[str] = set()
        result: dict[str, list[str]] = {}
        for category, phrases in mapping.items():
            cleaned = []
            for phrase in phrases:
                norm = normalise_phrase(phrase)
                if not norm or len(norm.split()) > MAX_PHRASE_WORDS:
                    raise ValueError(f"phrase {phrase!r} must be 1 to {MAX_PHRASE_WORDS} words")
                if norm in seen:
                    raise ValueError(f"phrase {phrase!r} is used twice")
                seen.add(norm)
                cleaned.append(norm)
            result[category] = cleaned
        return result

    @model_validator(mode="after")
    def _known(self) -> ConsentSettings:
        for category in self.optout_phrases or {}:
            if category not in self.categories:
                raise ValueError(f"optout_phrases names {category!r}, not one of the categories")
        return self

    def phrases(self) -> dict[str, list[str]]:
        """Category opt-out phrases in force (the defaults for the categories listed)."""
        if self.optout_phrases is not None:
            return self.optout_phrases
        return {c: list(p) for c, p in DEFAULT_CATEGORY_PHRASES.items() if c in self.categories}
