"""Batches: one submission's messages, counted by state, with progress and what a cancel does.

Pure rules only: the config service's read model supplies the counts (`services/config/
adapters/batches.py`); the forecast of the remaining messages comes from `forecast`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BATCH_NAMESPACE = uuid.UUID("0b6f3f0e-8d55-4c52-93a4-2f6a1b7c9e10")

TERMINAL = ("sent", "failed", "suppressed", "cancelled", "expired")
STATES = ("accepted", "queued", *TERMINAL)
"""`accepted`: submitted but not yet stored by the gateway; `queued`: stored, waiting for a
tick (or in flight: the bus does not say when a provider call starts)."""


class InvalidBatchId(ValueError):
    """A batch id that cannot be one (the API answers 422 naming `batch_id`)."""


def batch_id_for(site_id: str, channel: str, idempotency_keys: Sequence[str | None]) -> str:
    """A submission's batch id: derived from its messages' idempotency keys when every message
    has one (so a retried submission is the same batch), else a new random id."""
    if idempotency_keys and all(k is not None for k in idempotency_keys):
        joined = "\x1e".join(sorted(k for k in idempotency_keys if k is not None))
        return str(uuid.uuid5(BATCH_NAMESPACE, f"{site_id}\x1f{channel}\x1f{joined}"))
    return str(uuid.uuid4())


def check_batch_id(value: str) -> str:
    """`value` as a canonical batch id (a UUID), or InvalidBatchId saying what one looks like."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidBatchId(
            f"{value[:80]!r} is not a batch id (a UUID such as "
            "0b6f3f0e-8d55-4c52-93a4-2f6a1b7c9e10)"
        ) from None


@dataclass(frozen=True)
class BatchProgress:
    """A batch's messages by state and how far it is."""

    total: int
    counts: dict[str, int]

    @property
    def finished(self) -> int:
        """Messages with their terminal event."""
        return sum(self.counts.get(s, 0) for s in TERMINAL)

    @property
    def remaining(self) -> int:
        """Messages that may still be sent (accepted or queued)."""
        return self.total - self.finished

    @property
    def percent(self) -> float:
        """Finished share of the batch, 0-100, exact to one decimal."""
        if self.total == 0:
            return 100.0
        return round(100.0 * self.finished / self.total, 1)

    @property
    def done(self) -> bool:
        """Every message has ended."""
        return self.remaining == 0

    def as_json(self) -> dict[str, object]:
        """JSON-ready progress."""
        return {
            "total": self.total,
            "counts": dict(self.counts),
            "finished": self.finished,
            "remaining": self.remaining,
            "percent": self.percent,
            "done": self.done,
        }


def progress(total: int | None, stored: Mapping[str, int]) -> BatchProgress:
    """Progress from the submitted total and the per-state counts the read model has seen.

    Messages submitted but not yet seen as queued count as `accepted`; when the total is not
    known (a producer publishing to the bus directly) the messages seen are the total.
    """
    counts = {state: int(stored.get(state, 0)) for state in STATES if state != "accepted"}
    seen = sum(counts.values())
    whole = max(total if total is not None else seen, seen)
    return BatchProgress(whole, {"accepted": whole - seen, **counts})


def cancel_answer(before: BatchProgress, to_cancel: int) -> str:
    """What a cancel request tells its caller."""
    if before.done:
        return "the batch has finished: nothing to cancel"
    if to_cancel == 0:
        return "no message of the batch is waiting: those in flight end as the provider answers"
    return (
        f"cancelling {to_cancel} waiting message{'s' if to_cancel != 1 else ''}; "
        "any in flight end as the provider answers"
    )
