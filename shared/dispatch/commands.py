"""Operator commands from CONTROL: cancel and reset-failed, plus any a gateway adds (the email
gateway's attachment release) by event type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from nats.aio.msg import Msg

from shared.bus.deadletter import DeadLetter
from shared.dispatch.checks import command_problem
from shared.dispatch.ports import DeadLetterSink, Queue, Relay
from shared.events.codec import UndecodableEvent, decode
from shared.events.envelope import Envelope
from shared.events.schemas.control import CancelRequested, ResetFailedRequested

CommandHandler = Callable[[Envelope, Msg], Awaitable[None]]
"""A gateway's own command: gets the decoded event and its message."""


class CommandRefused(Exception):
    """A gateway's own command cannot be applied; the message is dead-lettered with `str(exc)`."""


class Commands:
    """Applies one operator command; what cannot be applied is dead-lettered with the reason."""

    def __init__(
        self,
        *,
        channel: str,
        queue: Queue,
        relay: Relay,
        dead_letters: DeadLetterSink,
        extra: Mapping[type, CommandHandler] | None = None,
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.relay = relay
        self.dead_letters = dead_letters
        self.extra = dict(extra or {})

    async def apply(self, msg: Msg) -> None:
        """Apply one operator command from CONTROL."""
        try:
            event = decode(msg.headers, msg.data)
        except UndecodableEvent as exc:
            await self._dead_letter(msg, str(exc))
            return
        data = event.data
        for kind, handler in self.extra.items():
            if isinstance(data, kind):
                try:
                    await handler(event, msg)
                except CommandRefused as exc:
                    await self._dead_letter(msg, str(exc))
                    return
                self.relay.nudge()
                return
        problem = command_problem(data)
        if problem:
            await self._dead_letter(msg, problem)
            return
        if isinstance(data, CancelRequested):
            await self.queue.cancel(
                data.site_id,
                data.message_ids,
                reason=data.reason or "cancelled",
                actor=event.actor,
                group_id=data.group_id,
            )
        elif isinstance(data, ResetFailedRequested):
            await self.queue.requeue_failed(data.site_id, data.message_ids, actor=event.actor)
        else:
            await self._dead_letter(
                msg, f"not a command for the {self.channel} gateway: {event.ce_type}"
            )
            return
        self.relay.nudge()

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        await self.dead_letters.publish(
            [DeadLetter.from_msg(msg, f"{self.channel}-control", reason)]
        )
