"""Every JetStream stream and durable consumer, declared in one place and applied idempotently.

Each service calls `ensure_streams` at start-up (any start order works) and `ensure_consumer`
for the durables it reads. Changing a definition here and restarting updates the server.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.errors import BadRequestError, NotFoundError, ServerError

log = logging.getLogger(__name__)

DAY = 24 * 3600.0

# Stream names.
SETTINGS = "SETTINGS"
ACCESS = "ACCESS"
OUTBOX = "OUTBOX"
TICKS = "TICKS"
CONTROL = "CONTROL"
DISPATCH = "DISPATCH"
PROVIDERS = "PROVIDERS"
INBOUND = "INBOUND"
OPTOUTS = "OPTOUTS"
DEADLETTER = "DEADLETTER"
ALERTS = "ALERTS"
AUDIT = "AUDIT"

# Key-value buckets (each a stream named KV_<bucket>).
CONSOLE_SESSIONS = "console_sessions"
PRIVACY_KEYS = "privacy_keys"
CONSOLE_SESSION_TTL = 12 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    """What a stream holds and why it is configured so."""

    name: str
    subjects: tuple[str, ...]
    description: str
    retention: RetentionPolicy = RetentionPolicy.LIMITS
    max_age: float = 0.0
    max_bytes: int = -1
    discard: DiscardPolicy = DiscardPolicy.OLD
    duplicate_window: float = 120.0
    append_only: bool = False
    sources: tuple[str, ...] = ()

    def config(self, replicas: int) -> StreamConfig:
        """The nats-py configuration for `replicas` copies."""
        return StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects) or None,
            retention=self.retention,
            max_age=self.max_age,
            max_bytes=self.max_bytes,
            discard=self.discard,
            duplicate_window=self.duplicate_window,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
            deny_delete=self.append_only,
            deny_purge=self.append_only,
            # The server caps a stream at 1,000 consumers unless told otherwise; replays and
            # projections create short-lived ones.
            max_consumers=10_000,
            sources=[StreamSource(name=s) for s in self.sources] or None,
        )


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        SETTINGS,
        ("settings.>",),
        "Event store of group and site settings; one subject per aggregate.",
        append_only=True,
    ),
    StreamSpec(
        ACCESS,
        ("access.>",),
        "Event store of API tokens (hashes, roles, revocations).",
        append_only=True,
    ),
    StreamSpec(
        OUTBOX,
        ("outbox.>",),
        "Accepted messages waiting for their gateway; one subject per site and channel. "
        "Never expires and refuses new messages when full, so nothing accepted is dropped.",
        retention=RetentionPolicy.WORK_QUEUE,
        max_bytes=8 * 1024**3,
        discard=DiscardPolicy.NEW,
        duplicate_window=3600.0,
    ),
    StreamSpec(
        TICKS,
        ("ticks.>",),
        "Permissions to send. Deterministic ids plus the duplicate window let scheduler "
        "replicas run active-active; stale ticks are worthless, so they age out.",
        retention=RetentionPolicy.WORK_QUEUE,
        max_age=3600.0,
        duplicate_window=300.0,
    ),
    StreamSpec(
        CONTROL,
        ("control.>",),
        "Operator commands with their actors: send-now, reset-failed, cancel, release.",
        max_age=365 * DAY,
    ),
    StreamSpec(
        DISPATCH,
        ("dispatch.>",),
        "The fate of every message: queued, sent, delivered, failed, suppressed, cancelled, "
        "expired, held.",
        max_age=365 * DAY,
    ),
    StreamSpec(
        PROVIDERS,
        ("credits.>", "provider.>"),
        "Provider accounts: credit balances, low-credit and top-up events, test results.",
        max_age=365 * DAY,
    ),
    StreamSpec(
        INBOUND,
        ("replies.>", "inbound.>"),
        "Inbound SMS replies and inbound email, attachment quarantine and release.",
        max_age=365 * DAY,
    ),
    StreamSpec(
        OPTOUTS,
        ("optouts.>",),
        "Suppression lists per group and channel (opt-out, opt-in), event-sourced.",
        append_only=True,
    ),
    StreamSpec(
        DEADLETTER,
        ("deadletter.>",),
        "Messages a consumer could not process, with the reason, for an operator to inspect.",
        max_age=90 * DAY,
    ),
    StreamSpec(
        ALERTS,
        ("alerts.>",),
        "Alerts to a group's admins (raised, cleared), one subject per group, so an auditor "
        "can replay who was told what and when.",
        max_age=365 * DAY,
    ),
    StreamSpec(
        AUDIT,
        (),
        "One ordered copy of every event stream, so the audit chain has a single total order "
        "that a rebuild reproduces exactly.",
        sources=(
            SETTINGS,
            ACCESS,
            CONTROL,
            DISPATCH,
            PROVIDERS,
            INBOUND,
            OPTOUTS,
            DEADLETTER,
            ALERTS,
        ),
        append_only=True,
    ),
)

STREAMS_BY_NAME = {spec.name: spec for spec in STREAMS}


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer shared by every replica of one service."""

    stream: str
    durable: str
    filter_subject: str
    description: str
    ack_wait: float = 30.0
    max_deliver: int = -1
    max_ack_pending: int = 10_000
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL
    backoff: tuple[float, ...] = field(default=())

    def config(self) -> ConsumerConfig:
        """The nats-py configuration."""
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            description=self.description,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            deliver_policy=self.deliver_policy,
            backoff=list(self.backoff) or None,
        )


CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec(
        OUTBOX, "sms-outbox", "outbox.sms.>", "SMS gateway takes accepted SMS into its queue."
    ),
    ConsumerSpec(OUTBOX, "email-outbox", "outbox.email.>", "Email gateway takes accepted email."),
    ConsumerSpec(
        TICKS, "sms-ticks", "ticks.sms.>", "SMS gateway replicas share SMS ticks.", ack_wait=120.0
    ),
    ConsumerSpec(
        TICKS,
        "email-ticks",
        "ticks.email.>",
        "Email gateway replicas share email ticks.",
        ack_wait=300.0,
    ),
    ConsumerSpec(
        CONTROL,
        "scheduler-send-now",
        "control.send_now.>",
        "Scheduler turns each send-now command into one manual tick.",
        deliver_policy=DeliverPolicy.NEW,
    ),
    ConsumerSpec(
        CONTROL,
        "sms-control",
        "control.sms.>",
        "SMS gateway applies operator commands (reset failed, cancel).",
        deliver_policy=DeliverPolicy.NEW,
    ),
    ConsumerSpec(
        CONTROL,
        "email-control",
        "control.email.>",
        "Email gateway applies operator commands (reset failed, cancel, release attachment).",
        deliver_policy=DeliverPolicy.NEW,
    ),
)

CONSUMERS_BY_NAME = {spec.durable: spec for spec in CONSUMERS}


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create every stream and key-value bucket, or update it to the declared configuration."""
    for spec in STREAMS:
        await ensure_stream(js, spec, replicas)
    await ensure_console_sessions(js, replicas)
    await ensure_privacy_keys(js, replicas)


async def ensure_privacy_keys(js: JetStreamContext, replicas: int = 1) -> None:
    """The bucket of recipients' data keys (docs/privacy.md): sealed keys, one per recipient,
    kind and day, deleted for good on erasure and when a retention ends. Created when missing."""
    try:
        await js.stream_info(f"KV_{PRIVACY_KEYS}")
        return
    except NotFoundError:
        pass
    try:
        # The bucket's stream declared by hand: `create_key_value` always sets deny_delete,
        # and erasure needs JetStream's message delete, which overwrites the stored bytes
        # (a key-value delete or purge only adds a marker and leaves them on disk).
        await js.add_stream(
            StreamConfig(
                name=f"KV_{PRIVACY_KEYS}",
                description="Recipients' data keys, sealed with the service key; deleting one "
                "makes every field sealed under it unreadable (crypto-shredding).",
                subjects=[f"$KV.{PRIVACY_KEYS}.>"],
                allow_direct=True,
                allow_rollup_hdrs=True,
                deny_delete=False,
                deny_purge=False,
                discard=DiscardPolicy.NEW,
                duplicate_window=120,
                max_consumers=-1,
                max_msgs=-1,
                max_msgs_per_subject=1,
                num_replicas=replicas,
                storage=StorageType.FILE,
            )
        )
        log.info("key-value bucket created", extra={"bucket": PRIVACY_KEYS})
    except BadRequestError as exc:
        if exc.err_code != 10058:  # another service created it meanwhile
            raise


async def ensure_console_sessions(js: JetStreamContext, replicas: int = 1) -> None:
    """The bucket of live console sessions (one key per signed-in session id).

    A key-value bucket rather than an event stream: a session is current state shared by every
    config replica, not history, and the bucket's TTL forgets it when its cookie would expire
    anyway. Created only when missing (services may read stream info but not change streams).
    """
    try:
        await js.stream_info(f"KV_{CONSOLE_SESSIONS}")
        return
    except NotFoundError:
        pass
    try:
        await js.create_key_value(
            KeyValueConfig(
                bucket=CONSOLE_SESSIONS,
                description="Signed-in console sessions; signing out deletes the key, so "
                "every copy of that session's cookie stops working on every replica.",
                history=1,
                # A little longer than a cookie lives, so a live cookie always finds its key.
                ttl=CONSOLE_SESSION_TTL + 600,
                replicas=replicas,
                direct=True,
            )
        )
        log.info("key-value bucket created", extra={"bucket": CONSOLE_SESSIONS})
    except BadRequestError as exc:
        if exc.err_code != 10058:  # another service created it meanwhile
            raise


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int = 1) -> None:
    """Create one stream or bring an existing one to its declared configuration."""
    config = spec.config(replicas)
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        try:
            await add_stream_when_ready(js, config)
            log.info("stream created", extra={"stream": spec.name})
            return
        except BadRequestError as exc:
            # Another service created it between our lookup and our add.
            if exc.err_code != 10058:
                raise
            info = await js.stream_info(spec.name)
    if _differs(info.config, config):
        # Replicas cannot be changed together with other fields on some servers: keep theirs.
        await js.update_stream(replace(config, num_replicas=info.config.num_replicas or replicas))
        log.info("stream updated", extra={"stream": spec.name})


STORE_BUSY = 10049
"""JetStream's "error creating store for stream": right after the account's last stream was
deleted, the server removes the account's storage directory in the background, and a stream
created meanwhile cannot make its own directory. The next attempt finds the way clear."""
STORE_ATTEMPTS = 6
STORE_FIRST_WAIT_SECONDS = 0.05
"""Doubled after each busy answer: about 1.5 s in all before the error is reported."""


async def add_stream_when_ready(js: JetStreamContext, config: StreamConfig) -> None:
    """Create a stream, trying again while the server is still removing a deleted one's store."""
    delay = STORE_FIRST_WAIT_SECONDS
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            await js.add_stream(config)
            return
        except ServerError as exc:
            if exc.err_code != STORE_BUSY or attempt == STORE_ATTEMPTS:
                raise
            log.warning(
                "stream store not ready; trying again",
                extra={"stream": config.name, "attempt": attempt},
            )
            await asyncio.sleep(delay)
            delay *= 2


def _differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    fields = (
        "subjects",
        "retention",
        "max_age",
        "max_bytes",
        "discard",
        "duplicate_window",
        "allow_direct",
        "deny_delete",
        "deny_purge",
        "max_consumers",
        "description",
    )
    for name in fields:
        if getattr(current, name) != getattr(wanted, name):
            return True
    current_sources = sorted(s.name for s in current.sources or [])
    wanted_sources = sorted(s.name for s in wanted.sources or [])
    return current_sources != wanted_sources


async def ensure_consumer(js: JetStreamContext, durable: str) -> ConsumerSpec:
    """Create (or update) one declared durable consumer and return its spec."""
    spec = CONSUMERS_BY_NAME[durable]
    await js.add_consumer(spec.stream, config=spec.config())
    return spec
