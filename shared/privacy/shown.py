"""How a recipient is shown to staff who may not read it in full (pure).

A practice manager looking up a patient who rang asks "is this number on the list?": the last
digits of a number, the first letter and the domain of an address, are enough to recognise the
one they have in front of them, and too little to copy a list of patients out of the page.
"""

from __future__ import annotations

import re

from shared.privacy.cipher import ERASED, is_personal, tag_of
from shared.privacy.tags import TAG_HEX

_TAG = re.compile(rf"[0-9a-f]{{{TAG_HEX}}}")
DOT = "•"


def is_tag(value: str) -> bool:
    """True for a salted hash (what a sealed ledger names a recipient by)."""
    return _TAG.fullmatch(value) is not None


def masked(recipient: str) -> str:
    """`+61•••••••678`, `j•••@example.com`; `erased` and tags as they are."""
    if recipient == ERASED or is_tag(recipient) or is_personal(recipient):
        return recipient if not is_personal(recipient) else tag_of(recipient)
    local, at, domain = recipient.partition("@")
    if at:
        return f"{local[:1]}{DOT * 3}@{domain}"
    digits = re.sub(r"[^0-9]", "", recipient)
    if len(digits) < 6:
        return DOT * 3
    lead = "+" + digits[:2] if recipient.strip().startswith("+") else digits[:2]
    return f"{lead}{DOT * (len(digits) - 5)}{digits[-3:]}"
