"""Personal fields in, sealed fields out (and back): the one place the rest of the code calls.

Applied where personal data enters a stream or a table (the API's submission, a gateway's
intake of a message a producer published in clear, an inbound reply) and where it must be read
in clear (a provider call, an export). Everything between carries the sealed values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from nats.aio.client import Client

from shared.events.schemas.messages import Attachment, MessageAccepted
from shared.privacy.cipher import ERASED, is_personal, key_id_of, open_sealed, seal
from shared.privacy.keyring import RecipientKeys
from shared.privacy.tag_key import load_tag_key
from shared.privacy.tags import recipient_tag
from shared.secrets import SecretBox

ADDRESS = "id"
BODY = "body"
REPLY = "reply"
KINDS = (ADDRESS, BODY, REPLY)
KEY_FETCHES = 64
"""Key lookups (and creations) one sealer keeps in flight at once."""
"""Kinds of key: an address lives until erasure; bodies and replies also until retention."""


def day_of(when: datetime | None = None) -> str:
    """The UTC day a body's key is named after (`YYYYMMDD`)."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d")


def key_id(tag: str, kind: str, day: str | None = None) -> str:
    """`<tag>.<kind>.<day>`; addresses are not day-scoped (day `0`)."""
    return f"{tag}.{kind}.{day if kind != ADDRESS and day else '0'}"


@dataclass(frozen=True)
class MessageSealer:
    """Seals messages of one group with keys fetched beforehand (synchronous, for validation
    loops that build thousands of events)."""

    group_id: str
    day: str
    tags: dict[str, str]
    keys: dict[str, bytes]

    def field(self, recipient: str, kind: str, value: str) -> str:
        """One value sealed under `recipient`'s key of `kind`."""
        kid = key_id(self.tags[recipient], kind, self.day)
        return seal(self.keys[kid], self.group_id, kid, value)

    def message(self, msg: MessageAccepted) -> MessageAccepted:
        """An accepted message with its address, body, subject, html and attachments sealed."""
        if is_personal(msg.to):
            return msg
        to = msg.to

        def body(value: str | None) -> str | None:
            return None if value is None else self.field(to, BODY, value)

        return msg.model_copy(
            update={
                "to": self.field(to, ADDRESS, to),
                "body": self.field(to, BODY, msg.body),
                "subject": body(msg.subject),
                "html": body(msg.html),
                "attachments": [
                    a.model_copy(
                        update={
                            "filename": self.field(to, BODY, a.filename),
                            "content_b64": self.field(to, BODY, a.content_b64),
                        }
                    )
                    for a in msg.attachments
                ],
                "recipient_tag": self.tags[to],
            }
        )


class PersonalData:
    """Tags, seals and opens personal fields for every service."""

    def __init__(self, nc: Client, box: SecretBox) -> None:
        self.keys = RecipientKeys(nc, box)
        self._nc = nc
        self._box = box
        self._tag_key: bytes | None = None

    async def ready(self) -> PersonalData:
        """Load the deployment's tag key (creating it on a first start). A service awaits this
        at start, before anything calls `tag`; the async methods here await it themselves."""
        if self._tag_key is None:
            self._tag_key = await load_tag_key(self._nc, self._box)
        return self

    def tag(self, group_id: str, recipient: str) -> str:
        """The salted hash lookups use in place of the recipient."""
        if is_personal(recipient):
            return key_id_of(recipient).split(".", 1)[0]
        if self._tag_key is None:
            raise RuntimeError("the tag key is not loaded: await PersonalData.ready() at start")
        return recipient_tag(self._tag_key, group_id, recipient)

    async def sealer(
        self, group_id: str, recipients: Iterable[str], when: datetime | None = None
    ) -> MessageSealer:
        """Fetch (creating) the address and body keys of `recipients` for today."""
        await self.ready()
        day = day_of(when)
        tags = {r: self.tag(group_id, r) for r in set(recipients)}
        wanted = {key_id(t, kind, day) for t in set(tags.values()) for kind in (ADDRESS, BODY)}
        keys = await _fetched(
            wanted,
            lambda kid: self.keys.cached(group_id, kid),
            lambda kid: self.keys.get_or_create(group_id, kid),
        )
        return MessageSealer(group_id, day, tags, keys)

    async def seal(
        self, group_id: str, recipient: str, kind: str, value: str, when: datetime | None = None
    ) -> str:
        """One value sealed under `recipient`'s key of `kind` (created if needed)."""
        await self.ready()
        kid = key_id(self.tag(group_id, recipient), kind, day_of(when))
        return seal(await self.keys.get_or_create(group_id, kid), group_id, kid, value)

    async def seal_message(self, msg: MessageAccepted) -> MessageAccepted:
        """`msg` with its personal fields sealed (unchanged if they already are)."""
        return (await self.seal_messages([msg]))[0]

    async def seal_messages(self, msgs: Sequence[MessageAccepted]) -> list[MessageAccepted]:
        """`seal_message` for a batch: one sealer per group and day, so the batch's keys are
        fetched together and only those this process does not hold already."""
        sealed = list(msgs)
        batches: dict[tuple[str, str], list[int]] = {}
        for i, msg in enumerate(msgs):
            if not is_personal(msg.to):
                batches.setdefault((msg.group_id, day_of(msg.submitted_at)), []).append(i)
        for (group_id, _), indices in batches.items():
            first = msgs[indices[0]]
            sealer = await self.sealer(group_id, [msgs[i].to for i in indices], first.submitted_at)
            for i in indices:
                sealed[i] = sealer.message(msgs[i])
        return sealed

    async def open(self, group_id: str, value: str | None) -> str | None:
        """The clear value, `erased` when its key is gone, a clear legacy value as it is."""
        if value is None or not is_personal(value):
            return value
        return open_sealed(await self.keys.get(group_id, key_id_of(value)), group_id, value)

    async def open_message(self, msg: MessageAccepted) -> MessageAccepted:
        """`msg` with its personal fields in clear, for the provider call."""
        return (await self.open_messages([msg]))[0]

    async def open_messages(self, msgs: Sequence[MessageAccepted]) -> list[MessageAccepted]:
        """`open_message` for a batch: the keys it needs are looked up together (only those
        this process does not hold already), then every field is opened without waiting."""
        wanted = {
            (msg.group_id, key_id_of(value))
            for msg in msgs
            if is_personal(msg.to) or is_personal(msg.body)
            for value in _personal_fields(msg)
        }
        keys = await _fetched(wanted, lambda k: self.keys.cached(*k), lambda k: self.keys.get(*k))
        return [_opened(msg, keys) for msg in msgs]

    async def erase(self, group_id: str, recipient: str) -> tuple[str, int]:
        """Delete every key of `recipient` in `group_id`: (its tag, keys erased)."""
        await self.ready()
        tag = self.tag(group_id, recipient)
        names = await self.keys.names(f"{group_id}.{tag}.>")
        return tag, await self.keys.delete(names)

    async def expire(self, group_id: str, kind: str, before_day: str) -> int:
        """Delete `kind` keys of `group_id` written before `before_day` (retention)."""
        names = await self.keys.names(f"{group_id}.*.{kind}.*")
        old = [n for n in names if n.rsplit(".", 1)[1] < before_day]
        return await self.keys.delete(old)


def _personal_fields(msg: MessageAccepted) -> list[str]:
    values = [msg.to, msg.body, msg.subject, msg.html]
    values += [v for a in msg.attachments for v in (a.filename, a.content_b64)]
    return [v for v in values if v is not None and is_personal(v)]


def _opened(msg: MessageAccepted, keys: dict[tuple[str, str], bytes | None]) -> MessageAccepted:
    if not is_personal(msg.to) and not is_personal(msg.body):
        return msg
    g = msg.group_id

    def clear(value: str | None) -> str | None:
        if value is None or not is_personal(value):
            return value
        return open_sealed(keys[(g, key_id_of(value))], g, value)

    attachments = [
        Attachment(
            filename=clear(a.filename) or "",
            content_type=a.content_type,
            size=a.size,
            content_b64=clear(a.content_b64) or "",
        )
        for a in msg.attachments
    ]
    return msg.model_copy(
        update={
            "to": clear(msg.to),
            "body": clear(msg.body),
            "subject": clear(msg.subject),
            "html": clear(msg.html),
            "attachments": attachments,
        }
    )


K = TypeVar("K")
V = TypeVar("V")


async def _fetched(
    wanted: Iterable[K],
    cached: Callable[[K], V | None],
    fetch: Callable[[K], Awaitable[V]],
) -> dict[K, V]:
    """Keys from this process's cache, the rest fetched: many at a time (a batch of thousands
    of recipients needs as many keys, and one round trip each, in turn, would hold it for
    seconds), and no task at all for the cached ones."""
    found: dict[K, V] = {}
    missing: list[K] = []
    for k in wanted:
        hit = cached(k)
        if hit is None:
            missing.append(k)
        else:
            found[k] = hit
    if missing:
        limit = asyncio.Semaphore(KEY_FETCHES)

        async def one(k: K) -> V:
            async with limit:
                return await fetch(k)

        fetched = await asyncio.gather(*(one(k) for k in missing))
        found.update(zip(missing, fetched, strict=True))
    return found


__all__ = ["ADDRESS", "BODY", "ERASED", "KINDS", "REPLY", "MessageSealer", "PersonalData"]
