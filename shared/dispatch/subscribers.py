"""The engine's FastStream subscribers: ticks, operator commands, and the queue-depth request.

They are declared before the broker connects (so the AsyncAPI document lists them) and hand
each message to the engine the gateway builds in `start()`, before the broker starts
delivering: `engine` is called per message, never before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub

from shared.bus import subjects
from shared.bus.deadletter import DeadLetter
from shared.bus.rpc import BadRequest, raw_body, request_object
from shared.bus.topology import CONSUMERS_BY_NAME, CONTROL, TICKS
from shared.dispatch.engine import DispatchEngine
from shared.dispatch.tuning import COMMAND_ATTEMPTS, EngineTuning

log = logging.getLogger(__name__)


def declare_subscribers(
    broker: NatsBroker,
    *,
    channel: str,
    tuning: EngineTuning,
    engine: Callable[[], DispatchEngine[Any, Any]],
) -> None:
    """Declare the engine's subscribers on `broker` (before it starts)."""
    ticks = CONSUMERS_BY_NAME[f"{channel}-ticks"]
    control = CONSUMERS_BY_NAME[f"{channel}-control"]
    # Intake (`outbox.<channel>.>`) is not a FastStream subscriber but a `PullLoop` (see
    # docs/architecture.md, "One way to consume the bus"); the engine starts it.

    @broker.subscriber(
        ticks.filter_subject,
        stream=JStream(TICKS, declare=False),
        durable=ticks.durable,
        config=ticks.config(),
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        decoder=raw_body,  # the handler decodes (and dead-letters) the raw message itself
        max_workers=tuning.tick_workers,
        title=f"{channel}-gateway ticks",
        description="Permissions to send (stagger.tick.issued); one replica takes each.",
    )
    async def on_tick(body: Any, msg: NatsMessage) -> None:
        await engine().take_tick(msg)

    @broker.subscriber(
        control.filter_subject,
        stream=JStream(CONTROL, declare=False),
        durable=control.durable,
        config=control.config(),
        pull_sub=PullSub(batch_size=10, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        decoder=raw_body,
        title=f"{channel}-gateway commands",
        description="Operator commands: reset failed, cancel.",
    )
    async def on_control(body: Any, msg: NatsMessage) -> None:
        raw = msg.raw_message
        running = engine()
        try:
            await running.command(raw)
        except Exception as exc:
            # A command that keeps failing must not come back forever: retry a few times
            # (the database may be briefly away), then park it with the error.
            deliveries = raw.metadata.num_delivered
            if deliveries < COMMAND_ATTEMPTS:
                log.warning("command failed; retrying", extra={"error": repr(exc)})
                await msg.nack(delay=1.0)
                return
            await running.dead_letters.publish(
                [
                    DeadLetter.from_msg(
                        raw,
                        f"{channel}-control",
                        f"failed {deliveries} times: {type(exc).__name__}: {exc}",
                    )
                ]
            )
        await msg.ack()

    @broker.subscriber(
        subjects.rpc(f"{channel}_gateway", "queue_depth"),
        decoder=raw_body,
        title=f"{channel}-gateway queue depth",
        description="Request/reply: {site_id} → {queued}.",
    )
    async def queue_depth(body: Any) -> dict[str, Any]:
        try:
            site_id = str(request_object(body, '{"site_id": "…"}').get("site_id") or "")
        except BadRequest as exc:
            return {"error": str(exc)}
        return {"site_id": site_id, "queued": await engine().queue.depth(site_id or None)}
