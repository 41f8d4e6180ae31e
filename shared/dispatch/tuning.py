"""The delivery engine's knobs (a gateway's process configuration fills them) and the fixed
constants its pacing rests on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class EngineTuning:
    """Knobs of the delivery engine."""

    lease_seconds: float = 60.0
    recovery_seconds: float = 5.0
    expiry_seconds: float = 30.0
    parallel_sends: int = 16
    tick_workers: int = 8
    max_attempts: int = 5
    retry_base_seconds: float = 2.0
    retry_cap_seconds: float = 300.0
    intake_batch: int = 500
    intake_attempts: int = 5
    """Deliveries of an accepted message that fails to be stored for a reason other than its
    content (an unknown site, a database error) before it is dead-lettered with the reason."""
    intake_retry_seconds: float = 2.0
    """Wait before such a message is delivered again."""
    retention_days: float = 90.0
    """Finished messages older than this leave the ledger (0: kept for ever)."""


STALL = timedelta(milliseconds=100)
"""A send later than this (or than one interval of its account, if longer) for its slot takes a
fresh one: each late send crowds the next slots, so one interval late is the most that still
keeps an account within one send of its rate in any window."""

SHORT_TICK_SECONDS = 5.0
"""An account tick whose window is at most this long keeps taking newly arrived messages
until its window ends (a longer one would tie up a tick worker)."""

SHORT_PAUSE_SECONDS = 0.05
"""A pause this short is slept through even if draining starts meanwhile."""

COMMAND_ATTEMPTS = 3
"""Deliveries of an operator command that fails before it is dead-lettered."""
