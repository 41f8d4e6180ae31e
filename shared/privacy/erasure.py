"""Erasing a recipient: delete the keys, then record who did it and when (docs/privacy.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.js.errors import APIError

from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import OPTOUTS
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.privacy import RecipientErased
from shared.eventstore import EventStore
from shared.privacy.codec import PersonalData


@dataclass(frozen=True)
class Erasure:
    """What an erasure did."""

    recipient_tag: str
    keys_erased: int
    event_id: str | None

    def as_json(self) -> dict[str, object]:
        """The API's answer (no recipient in it)."""
        return {
            "recipient_tag": self.recipient_tag,
            "keys_erased": self.keys_erased,
            "already_erased": self.keys_erased == 0,
            "event_id": self.event_id,
        }


async def erase_recipient(
    nc: Client, personal: PersonalData, group_id: str, recipient: str, actor: str
) -> Erasure:
    """Delete every key of `recipient` in `group_id` and record the erasure.

    Idempotent: once the keys are gone a repeat finds none and records nothing more."""
    tag, erased = await personal.erase(group_id, recipient)
    if erased == 0:
        return Erasure(tag, 0, None)
    event = make_event(
        RecipientErased(
            group_id=group_id,
            recipient_tag=tag,
            erased_by=actor,
            erased_at=datetime.now(UTC),
            keys_erased=erased,
        ),
        source="config",
        actor=actor,
        subject=tag,
        group_id=group_id,
    )
    headers, body = encode(event)
    [result] = await publisher_for(nc).publish_all(
        [Outgoing(subjects.erasures(group_id), body, headers)]
    )
    if isinstance(result, APIError):
        # The keys are gone either way; a repeat finds none, so the record is retried here.
        raise RuntimeError(f"the erasure record was refused: {result.description}")
    return Erasure(tag, erased, event.id)


async def reapply_erasures(nc: Client, personal: PersonalData) -> int:
    """Delete again the keys of every recipient ever erased; returns how many keys were found.

    Erasure events name the recipient's tag, which names the keys, so a key bucket restored
    from a backup older than an erasure is brought back in line (nothing found normally)."""
    found = 0
    store = EventStore(nc, OPTOUTS)
    async for event in store.replay(filter_subject=subjects.erasures("*"), lenient=True):
        data = event.data
        if isinstance(data, RecipientErased):
            names = await personal.keys.names(f"{data.group_id}.{data.recipient_tag}.>")
            found += await personal.keys.delete(names)
    return found
