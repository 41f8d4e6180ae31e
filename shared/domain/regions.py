"""Regions whose SMS rules Stagger knows: the UK, Australia, New Zealand, the US (NANP)."""

from __future__ import annotations

from typing import Literal

Region = Literal["UK", "AU", "NZ", "US", "other"]
