"""The gateway's queue and ledger in SQL: every state change is a compare-and-set.

States: `queued` → `sending` (claimed under a lease, written *before* the provider call) →
one terminal state (`sent`, `failed`, `suppressed`, `cancelled`, `expired`), written *after*
it together with its event. A row leaves `sending` only by its lease owner, or, once the lease
has expired, by whoever takes the lease over and reconciles with the provider.
"""

from __future__ import annotations

from shared.dispatch.queue.claims import Claims
from shared.dispatch.queue.intake import Ingest
from shared.dispatch.queue.operator import OperatorActions
from shared.dispatch.queue.outcomes import Outcomes
from shared.dispatch.queue.receipts import Receipts
from shared.dispatch.queue.records import INGEST_CHUNK_BITS, Claimed, Incoming, Key
from shared.dispatch.queue.reports import Reports

__all__ = ["INGEST_CHUNK_BITS", "Claimed", "Incoming", "Key", "MessageQueue"]


class MessageQueue(Ingest, Claims, Outcomes, OperatorActions, Receipts, Reports):
    """SQL operations on one channel's queue, each with its event in the same transaction.

    One part per job (intake, claims, outcomes, operator actions, receipts, reports), all on
    the same tables (`QueueCore`).
    """
