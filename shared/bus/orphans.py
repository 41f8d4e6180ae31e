"""Keeping the AUDIT stream's copies of events their own streams no longer hold (past their
`max_age`: dead letters after 90 days, dispatch events after a year) when AUDIT is created
again by `stagger privacy rewrite-streams`.

They are copied (sealed like the rest) into a stream `REWRITE_ORPHANS` under
`_stagger.orphans.<original subject>`, which the new AUDIT sources first, before its usual
sources: the new trail keeps them, in front, with `REWRITE_ORPHANS` as their origin and their
old origin in the `Stagger-Original-Source` header. The stream is deleted once the rewrite is
finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace

from nats.aio.client import Client
from nats.js.api import PubAck, StorageType, StreamConfig, StreamSource
from nats.js.errors import NotFoundError

from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.restream import Stored, Transform, stored_messages
from shared.bus.topology import StreamSpec, add_stream_when_ready

ORPHANS = "REWRITE_ORPHANS"
PREFIX = "_stagger.orphans"
ORIGINAL_SOURCE = "Stagger-Original-Source"
_CHUNK = 500


async def orphan_count(nc: Client) -> int:
    """Messages `REWRITE_ORPHANS` holds (0 when there is none)."""
    try:
        return (await nc.jetstream().stream_info(ORPHANS)).state.messages
    except NotFoundError:
        return 0


async def keep_orphans(
    nc: Client, audit: str, is_orphan: Callable[[Stored], bool], transform: Transform, count: int
) -> None:
    """Copy AUDIT's `count` orphans into `REWRITE_ORPHANS` (again, if a copy is incomplete)."""
    js = nc.jetstream()
    if await orphan_count(nc) == count:
        return
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(ORPHANS)
    await add_stream_when_ready(
        js,
        StreamConfig(
            name=ORPHANS,
            description="AUDIT's copies of expired events while rewrite-streams recreates it.",
            subjects=[f"{PREFIX}.>"],
            storage=StorageType.FILE,
        ),
    )
    pending: list[Outgoing] = []
    copied = 0

    async def flush() -> None:
        for result in await publisher_for(nc).publish_all(pending):
            if not isinstance(result, PubAck):
                raise RuntimeError(f"keeping AUDIT's expired copies failed: {result}")
        pending.clear()

    async for msg in stored_messages(nc, audit):
        if not is_orphan(msg):
            continue
        new = await transform(msg)
        old_headers, body = (msg.headers or {}, msg.data) if new is None else new
        # JetStream's own headers (the source, the id, expectations) are not carried over.
        headers = {k: v for k, v in old_headers.items() if not k.startswith("Nats-")}
        # A copy kept by an earlier rewrite keeps the origin it named then.
        headers.setdefault(ORIGINAL_SOURCE, (msg.headers or {}).get("Nats-Stream-Source", ""))
        subject = msg.subject if msg.subject.startswith(PREFIX + ".") else f"{PREFIX}.{msg.subject}"
        pending.append(Outgoing(subject, body, headers))
        copied += 1
        if len(pending) >= _CHUNK:
            await flush()
    await flush()
    if copied != count or await orphan_count(nc) != count:
        raise RuntimeError(f"AUDIT's expired copies: {copied} copied of {count}; nothing changed")


async def source_orphans_first(
    nc: Client, spec: StreamSpec, replicas: int, wait_seconds: float = 600.0
) -> None:
    """Create the (deleted) sourcing stream with `REWRITE_ORPHANS` as its only source, wait
    for every orphan, then give it its declared sources (which keeps what it copied)."""
    js = nc.jetstream()
    expected = await orphan_count(nc)
    config = spec.config(replicas)
    await add_stream_when_ready(js, replace(config, sources=[StreamSource(name=ORPHANS)]))
    deadline = time.monotonic() + wait_seconds
    while (await js.stream_info(spec.name)).state.messages < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{spec.name} did not copy AUDIT's expired events in time")
        await asyncio.sleep(0.2)
    await js.update_stream(config)
