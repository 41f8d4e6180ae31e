"""Publishing storms of malformed messages and checking where each one ended.

Examples come from hypothesis strategies (`malformed.py`), generated deterministically (a fixed
seed per consumer, no example database), then published back to back, so the consumer meets
them as a storm. Each one must end in the DEADLETTER stream, recorded by the right consumer,
with a reason matching the example's pattern and the original kept; afterwards the consumer's
durable must have nothing pending or unacknowledged, and a valid message must still be handled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg

from shared.bus.deadletter import MAX_KEPT_BODY
from shared.bus.topology import DEADLETTER
from shared.config import StaggerConfig
from shared.events.codec import decode
from shared.events.schemas.deadletter import DeadLetterRecorded
from shared.runtime.nats_server import free_port
from shared.runtime.service import ServiceContext, ServiceDefinition, running
from shared.secrets import generate_key
from tests.integration.hardening.malformed import Malformed
from tests.support.waiting import wait_until

T = TypeVar("T")

EXAMPLES = 60
"""Malformed messages per consumer (plus the fixed ones every strategy always includes)."""


def examples(strategy: st.SearchStrategy[T], count: int, name: str) -> list[T]:
    """`count` examples of `strategy`, the same ones on every run (seeded by `name`)."""
    found: list[T] = []

    @seed(zlib.crc32(name.encode()))
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        found.append(value)

    collect()
    return found


@dataclass
class DeadLetters:
    """Every dead letter published while it listens (a core subscription on `deadletter.>`)."""

    nc: Client
    letters: list[DeadLetterRecorded] = field(default_factory=list)
    by_origin: dict[tuple[str, int, str], DeadLetterRecorded] = field(default_factory=dict)

    async def _on(self, msg: Msg) -> None:
        letter = decode(msg.headers, msg.data).data
        assert isinstance(letter, DeadLetterRecorded)
        self.letters.append(letter)
        if letter.origin_stream is not None and letter.origin_sequence is not None:
            key = (letter.origin_stream, letter.origin_sequence, letter.consumer)
            self.by_origin[key] = letter

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[DeadLetters]:
        sub = await self.nc.subscribe(
            "deadletter.>",
            cb=self._on,
            pending_msgs_limit=100_000,
            pending_bytes_limit=1024**3,
        )
        try:
            yield self
        finally:
            await sub.unsubscribe()

    def of(self, consumer: str) -> list[DeadLetterRecorded]:
        return [letter for letter in self.letters if letter.consumer == consumer]


def kept_body(letter: DeadLetterRecorded) -> bytes:
    """The original body as the dead letter keeps it."""
    if letter.body_encoding == "base64":
        return base64.b64decode(letter.body)
    return letter.body.encode()


def check_letter(
    letter: DeadLetterRecorded, example: Malformed, *, consumer: str, subject: str
) -> list[str]:
    """What is wrong with the dead letter of `example` (nothing: an empty list)."""
    problems = []
    if letter.consumer != consumer:
        problems.append(f"recorded by {letter.consumer}, not {consumer}")
    if letter.subject != subject:
        problems.append(f"subject {letter.subject!r}, not {subject!r}")
    if not re.search(example.expect, letter.reason):
        problems.append(f"reason {letter.reason[:300]!r} does not match {example.expect!r}")
    if kept_body(letter) != example.body[:MAX_KEPT_BODY]:
        problems.append("the original body is not kept")
    if letter.truncated != (len(example.body) > MAX_KEPT_BODY):
        problems.append(f"truncated={letter.truncated} for a {len(example.body)}-byte body")
    return problems


async def storm(
    nc: Client,
    letters: DeadLetters,
    items: list[tuple[str, Malformed]],
    *,
    consumer: str | list[str],
    timeout: float = 60.0,
) -> None:
    """Publish every (subject, example) to JetStream, then check each one's dead letter (one
    from each consumer when several read the subject)."""
    consumers = [consumer] if isinstance(consumer, str) else consumer
    js = nc.jetstream()
    published = []
    for subject, example in items:
        ack = await js.publish(subject, example.body, headers=example.headers, timeout=10)
        assert not ack.duplicate, f"{example!r} was taken for a duplicate"
        published.extend((ack.stream, ack.seq, name, subject, example) for name in consumers)

    def arrived() -> bool:
        return all(key[:3] in letters.by_origin for key in published)

    try:
        await wait_until(arrived, timeout=timeout, interval=0.1, message="every dead letter")
    except AssertionError:
        missing = [
            f"{name}: {example!r}"
            for stream, seq, name, _, example in published
            if (stream, seq, name) not in letters.by_origin
        ]
        raise AssertionError(
            f"{len(missing)} of {len(published)} malformed messages never reached "
            f"{DEADLETTER}:\n  " + "\n  ".join(missing[:20])
        ) from None
    failures = []
    for stream, seq, name, subject, example in published:
        problems = check_letter(
            letters.by_origin[(stream, seq, name)], example, consumer=name, subject=subject
        )
        if problems:
            failures.append(f"{name}: {example!r}: {'; '.join(problems)}")
    assert not failures, f"{len(failures)} bad dead letters:\n  " + "\n  ".join(failures[:20])


async def drained(nc: Client, stream: str, durable: str, timeout: float = 30.0) -> None:
    """The durable has delivered and had acknowledged everything (nothing stuck redelivering)."""

    async def empty() -> Any:
        info = await nc.jetstream().consumer_info(stream, durable)
        return info.num_pending == 0 and info.num_ack_pending == 0 and info.num_redelivered == 0

    await wait_until(empty, timeout=timeout, interval=0.2, message=f"{durable} drained")


def service_settings(
    nats_url: str, var_dir: Path, database_url: str | None = None, **extra: Any
) -> StaggerConfig:
    """Settings for one in-process service on free ports."""
    var_dir.mkdir(parents=True, exist_ok=True)
    return StaggerConfig(
        nats_url=nats_url,
        database_url=database_url,
        var_dir=var_dir,
        instance_id=f"fuzz-{free_port()}",
        http_port=free_port(),
        scheduler_http_port=free_port(),
        email_gateway_http_port=free_port(),
        sms_gateway_http_port=free_port(),
        audit_http_port=free_port(),
        secret_key=generate_key(),
        heartbeat_seconds=0.5,
        drain_timeout_seconds=5,
        **extra,
        sms_simulator_enabled=True,
    )


@contextlib.asynccontextmanager
async def service_running(
    definition: ServiceDefinition, settings: StaggerConfig
) -> AsyncIterator[ServiceContext]:
    """Run a real service in this event loop; fail if it crashed or stopped on its own."""
    async with running(definition, settings) as ctx:
        yield ctx
        assert not ctx.crashed, f"{definition.name} crashed: {ctx.crashed!r}"
        assert not ctx.stopping.is_set(), f"{definition.name} stopped by itself"


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking work (hypothesis generating megabyte examples) off the event loop."""
    return await asyncio.to_thread(fn)
