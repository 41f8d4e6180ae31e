"""Intake: accepted messages from the gateway's outbox consumer into its SQL queue, each once.

A batch is stored in one transaction; unreadable messages are dead-lettered at once; one that
failed for another reason (an unknown site, a database error) is delivered again a few times,
then dead-lettered with the reason. The `PullLoop` acknowledges only once all this is done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nats.aio.msg import Msg
from pydantic import ValidationError

from shared import tracing
from shared.bus.pull_loop import ACK, Poison, Retry, Verdict
from shared.dispatch.checks import deliveries, envelope_problem, message_problem
from shared.dispatch.flight import Arrivals
from shared.dispatch.ports import Queue, Relay, Sites
from shared.dispatch.queue import Incoming
from shared.dispatch.tuning import EngineTuning
from shared.domain.consent import default_category
from shared.events.codec import UndecodableEvent, decode
from shared.events.schemas.messages import MessageAccepted
from shared.eventstore import stream_position

log = logging.getLogger(__name__)


def with_consent(message: MessageAccepted, categories: Sequence[str]) -> MessageAccepted:
    """The message with its consent category checked against the group's list, or given the
    default for its kind when a producer left it out; UndecodableEvent names the field."""
    given = message.consent_category
    if given is None:
        return message.model_copy(
            update={"consent_category": default_category(message.category, categories)}
        )
    if given not in categories:
        raise UndecodableEvent(
            f"consent_category: {given!r} is not one of the group's consent categories "
            f"({', '.join(categories)})"
        )
    return message


class Intake:
    """Stores batches of accepted messages; returns a verdict per message for the pull loop."""

    def __init__(
        self,
        *,
        channel: str,
        queue: Queue,
        sites: Sites,
        relay: Relay,
        arrivals: Arrivals,
        tuning: EngineTuning,
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.sites = sites
        self.relay = relay
        self.arrivals = arrivals
        self.tuning = tuning

    async def handle(self, batch: Sequence[Msg]) -> list[Verdict]:
        """Store what can be stored; one verdict per message of `batch`, in order."""
        incoming: list[tuple[Msg, Incoming]] = []
        verdicts: dict[int, Verdict] = {}
        retry: list[tuple[Msg, str]] = []
        spans = []
        for msg in batch:
            span = None
            try:
                event = decode(msg.headers, msg.data)
                if not isinstance(event.data, MessageAccepted):
                    raise UndecodableEvent(f"expected stagger.message.accepted, got {event.type}")
                traceparent = None
                if tracing.enabled():
                    span = tracing.intake_span(
                        msg.headers,
                        message_id=event.data.message_id,
                        site_id=event.data.site_id,
                        channel=self.channel,
                        subject=msg.subject,
                    )
                    spans.append(span)
                    traceparent = tracing.traceparent_of(span)
                problem = envelope_problem(msg, event.data) or message_problem(
                    self.channel, event.data
                )
                if problem:
                    raise UndecodableEvent(problem)
                site = await self.sites.wait_for(event.data.site_id, patience=2.0)
                if site is None:
                    # Perhaps created a moment ago and not yet seen here: try again later.
                    retry.append((msg, f"unknown site {event.data.site_id}"))
                    continue
                if site.group_id != event.data.group_id:
                    raise UndecodableEvent(
                        f"site {event.data.site_id} is not in group {event.data.group_id}"
                    )
                accepted = with_consent(event.data, site.settings.consent.categories)
                incoming.append(
                    (
                        msg,
                        Incoming(
                            accepted,
                            event.actor,
                            event.correlation_id,
                            stream_position(msg)[0],
                            traceparent,
                        ),
                    )
                )
            except (UndecodableEvent, ValidationError, ValueError) as exc:
                verdicts[id(msg)] = Poison(str(exc))
                if span is not None:
                    tracing.record_error(span, f"dead-lettered: {exc}")
        try:
            stored, failed = await self._store(incoming)
            if stored:
                self.relay.nudge()
                self.arrivals.announce(i.message.site_id for i in stored)
        finally:
            for span in spans:
                span.end()
        retry.extend(failed)
        for msg, reason in retry:
            delivered = deliveries(msg)
            if delivered < self.tuning.intake_attempts:
                log.warning(
                    "intake of a message failed; retrying",
                    extra={"reason": reason, "deliveries": delivered},
                )
                verdicts[id(msg)] = Retry(self.tuning.intake_retry_seconds)
            else:
                verdicts[id(msg)] = Poison(f"not stored after {delivered} attempts: {reason}")
        return [verdicts.get(id(msg), ACK) for msg in batch]

    async def _store(
        self, incoming: list[tuple[Msg, Incoming]]
    ) -> tuple[list[Incoming], list[tuple[Msg, str]]]:
        """Store the batch in one transaction; if that fails, each message on its own, so one
        message the database refuses does not hold back the others. Returns what was stored
        and what failed (with the reason)."""
        if not incoming:
            return [], []
        try:
            await self.queue.ingest([i for _, i in incoming])
            return [i for _, i in incoming], []
        except Exception:
            log.exception("storing an intake batch failed; storing its messages one by one")
        stored: list[Incoming] = []
        failed: list[tuple[Msg, str]] = []
        for msg, item in incoming:
            try:
                await self.queue.ingest([item])
                stored.append(item)
            except Exception as exc:
                # A database error's own message, not SQLAlchemy's rendering of the statement
                # and its parameters (the recipient, the body).
                cause = getattr(exc, "orig", None) or exc
                failed.append((msg, f"{type(cause).__name__}: {cause}"[:1000]))
        return stored, failed
