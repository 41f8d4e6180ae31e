"""Automatic answers to STOP and HELP: which text, if any, a site sends back (pure rule).

US carriers (the CTIA handbook) expect every programme to confirm an opt-out with one last
message and to answer HELP; the UK, Australia and New Zealand expect neither, so there a site
sends them only when it sets a text. A site's own text wins everywhere; an empty text switches
the answer off even in the US. `{site}` in a text becomes the site's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from shared.domain.regions import Region

AutoReplyKind = Literal["optout", "help"]
MAX_AUTO_REPLY = 320
"""An answer nobody asked to pay for stays short: 320 characters, three GSM-7 segments at
most."""

REGION_DEFAULTS: Mapping[Region, Mapping[AutoReplyKind, str]] = MappingProxyType(
    {
        "US": MappingProxyType(
            {
                "optout": "{site}: you are unsubscribed and will receive no more texts. "
                "Reply START to resubscribe.",
                "help": "{site}: appointment reminders. Call the practice for help. "
                "Reply STOP to unsubscribe.",
            }
        ),
    }
)


def auto_reply_text(
    kind: str, region: Region, configured: str | None, site_name: str
) -> str | None:
    """The text to send back for a reply of `kind`, or None when nothing is sent."""
    if kind not in ("optout", "help"):
        return None
    text = configured if configured is not None else REGION_DEFAULTS.get(region, {}).get(kind)  # type: ignore[call-overload]
    if text is None or not text.strip():
        return None
    return text.replace("{site}", site_name).strip()[:MAX_AUTO_REPLY]
