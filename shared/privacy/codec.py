"""Personal fields in, sealed fields out (and back): the one place the rest of the code calls.

Applied where personal data enters a stream or a table (the API's submission, a gateway's
intake of a message a producer published in clear, an inbound reply) and where it must be read
in clear (a provider call, an export). Everything between carries the sealed values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

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
        wanted = [key_id(t, kind, day) for t in set(tags.values()) for kind in (ADDRESS, BODY)]
        # Many at a time: a batch of thousands of recipients needs as many keys, and one round
        # trip each, in turn, would hold its submission for seconds.
        limit = asyncio.Semaphore(KEY_FETCHES)

        async def fetch(kid: str) -> bytes:
            async with limit:
                return await self.keys.get_or_create(group_id, kid)

        found = await asyncio.gather(*(fetch(kid) for kid in wanted))
        return MessageSealer(group_id, day, tags, dict(zip(wanted, found, strict=True)))

    async def seal(
        self, group_id: str, recipient: str, kind: str, value: str, when: datetime | None = None
    ) -> str:
        """One value sealed under `recipient`'s key of `kind` (created if needed)."""
        await self.ready()
        kid = key_id(self.tag(group_id, recipient), kind, day_of(when))
        return seal(await self.keys.get_or_create(group_id, kid), group_id, kid, value)

    async def seal_message(self, msg: MessageAccepted) -> MessageAccepted:
        """`msg` with its personal fields sealed (unchanged if they already are)."""
        if is_personal(msg.to):
            return msg
        return (await self.sealer(msg.group_id, [msg.to], msg.submitted_at)).message(msg)

    async def open(self, group_id: str, value: str | None) -> str | None:
        """The clear value, `erased` when its key is gone, a clear legacy value as it is."""
        if value is None or not is_personal(value):
            return value
        return open_sealed(await self.keys.get(group_id, key_id_of(value)), group_id, value)

    async def open_message(self, msg: MessageAccepted) -> MessageAccepted:
        """`msg` with its personal fields in clear, for the provider call."""
        if not is_personal(msg.to) and not is_personal(msg.body):
            return msg
        g = msg.group_id
        attachments = [
            Attachment(
                filename=await self.open(g, a.filename) or "",
                content_type=a.content_type,
                size=a.size,
                content_b64=await self.open(g, a.content_b64) or "",
            )
            for a in msg.attachments
        ]
        return msg.model_copy(
            update={
                "to": await self.open(g, msg.to),
                "body": await self.open(g, msg.body),
                "subject": await self.open(g, msg.subject),
                "html": await self.open(g, msg.html),
                "attachments": attachments,
            }
        )

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


__all__ = ["ADDRESS", "BODY", "ERASED", "KINDS", "REPLY", "MessageSealer", "PersonalData"]
