"""Hard or soft: what a delivery-status notification means for the address (pure rule).

RFC 3463 status codes carry the class in their first digit: 5 is permanent (the address does
not exist, the domain refuses it) — a hard bounce, suppressed at once; 4 is transient (a full
mailbox, a server that was down) — a soft bounce, which only suppresses the address after
repeated ones. Without a status, the RFC 3464 action decides: `failed` is permanent by
definition, `delayed` is transient. `delivered`, `relayed` and `expanded` are not bounces.
"""

from __future__ import annotations

from typing import Literal

Severity = Literal["hard", "soft"]


def severity(action: str | None, status: str | None) -> Severity | None:
    """ "hard", "soft", or None when the report is not a bounce."""
    verb = (action or "").strip().lower()
    if verb in ("delivered", "relayed", "expanded"):
        return None
    code = (status or "").strip()
    if code[:2] == "5.":
        return "hard"
    if code[:2] == "4.":
        return "soft"
    if verb == "failed":
        return "hard"
    if verb == "delayed":
        return "soft"
    return None


def reaches_threshold(count: int, threshold: int) -> bool:
    """True when this many soft bounces suppress the address (a threshold under 1 never
    does: soft bounces are then only counted)."""
    return threshold >= 1 and count >= threshold
