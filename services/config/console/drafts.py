"""Wizard drafts: what someone changed on the wizard's screens, kept until Finish.

A draft lives in this process's memory, keyed by (session id, site id), and holds only the
fields that differ from the site's saved settings (a flat patch of dotted paths), plus the
version of the settings the wizard started from. Finish writes the patch once, with that
version: a concurrent change makes it a 409, never a silent overwrite. Secrets typed into the
wizard are kept encrypted (the session key) until Finish.

In memory on purpose: a draft is worth minutes of typing, not durability. With several config
replicas behind a load balancer, use session affinity for `/console` (docs/console.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

IDLE_SECONDS = 2 * 3600
MAX_DRAFTS = 2000


@dataclass
class Draft:
    """One person's unfinished wizard for one site."""

    site_id: str
    base_version: int
    patch: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    forecast_messages: int = 100
    forecast_days: int = 7
    test_result: dict[str, Any] | None = None
    email_test_result: dict[str, Any] | None = None  # issue 19: the email Test's answer
    flash: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    touched: float = field(default_factory=time.monotonic)

    def set(self, saved: dict[str, Any], path: str, value: Any) -> None:
        """Record a field's new value; a value equal to the saved one leaves the patch."""
        if saved.get(path) == value:
            self.patch.pop(path, None)
        else:
            self.patch[path] = value

    def values(self, saved: dict[str, Any]) -> dict[str, Any]:
        """The saved flat settings with this draft applied."""
        return {**saved, **self.patch}


class DraftStore:
    """Drafts by (session, site), dropped after `IDLE_SECONDS` unused (oldest first if full)."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS, capacity: int = MAX_DRAFTS) -> None:
        self._drafts: OrderedDict[tuple[str, str], Draft] = OrderedDict()
        self._idle = idle_seconds
        self._capacity = capacity

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, d in self._drafts.items() if now - d.touched > self._idle]:
            del self._drafts[key]
        while len(self._drafts) > self._capacity:
            self._drafts.popitem(last=False)

    def get(self, sid: str, site_id: str) -> Draft | None:
        """The draft, if there is one (touching it)."""
        self._expire()
        draft = self._drafts.get((sid, site_id))
        if draft is not None:
            draft.touched = time.monotonic()
            self._drafts.move_to_end((sid, site_id))
        return draft

    def start(self, sid: str, site_id: str, version: int) -> Draft:
        """A fresh draft from the settings at `version`."""
        draft = Draft(site_id, version)
        self._drafts[(sid, site_id)] = draft
        self._drafts.move_to_end((sid, site_id))
        self._expire()
        return draft

    def drop(self, sid: str, site_id: str | None = None) -> None:
        """Forget one draft, or every draft of a session (logout)."""
        for key in [k for k in self._drafts if k[0] == sid and site_id in (None, k[1])]:
            del self._drafts[key]
