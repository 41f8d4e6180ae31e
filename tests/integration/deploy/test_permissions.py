"""Per-service NATS users (deploy/nats/accounts.conf): each may do its own work and nothing else.

The server runs deploy/nats/standalone.conf itself (ports and paths substituted), provisioned by
the `admin` user with deploy/nats/provision.py. A refusal is proven twice where it matters: the
server's "permissions violation" reaches the client's error callback, and a JetStream publish
gets no acknowledgement (nothing is stored).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig

from shared.bus import subjects
from shared.bus.topology import CONSUMERS_BY_NAME, STREAMS, TICKS
from tests.integration.deploy.nats_configs import Connection, DeployedNats, connect_as
from tests.support.waiting import wait_until

_ids = itertools.count()

SERVICE_USERS = ("config", "scheduler", "email_gateway", "sms_gateway", "audit")


def sample_subject(pattern: str) -> str:
    """A concrete subject matching a stream's subject pattern."""
    return pattern.replace(">", "t1.t2").replace("*", "t0")


# One concrete subject for every event stream (AUDIT has none of its own: it sources the rest).
EVENT_SUBJECTS = tuple(sample_subject(p) for spec in STREAMS for p in spec.subjects)


@pytest.fixture
async def admin(deployed: DeployedNats) -> AsyncIterator[Client]:
    async with connect_as(deployed.url, "admin") as conn:
        yield conn.nc


async def stored(admin: Client, stream: str, subject: str) -> int:
    """How many messages `stream` holds on `subject` (seen by the admin user)."""
    info = await admin.jetstream().stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def assert_refused(conn: Connection, *names: str, action: str = "publish") -> None:
    """Each subject is refused: the server's permissions violation reaches the client."""
    for name in names:
        await conn.nc.publish(name, b"{}")
    await conn.nc.flush()
    for name in names:
        await wait_until(
            conn.refused(action, name), timeout=10, message=f"the server refusing {name}"
        )


async def assert_not_acknowledged(conn: Connection, subject: str) -> None:
    """A JetStream publish to `subject` gets no acknowledgement: nothing reached a stream."""
    with pytest.raises(nats.errors.TimeoutError):
        await conn.nc.jetstream().publish(subject, b"{}", timeout=1.5)
    await wait_until(conn.refused("publish", subject), timeout=10, message=f"{subject} refused")


async def assert_acknowledged(conn: Connection, subject: str, stream: str) -> None:
    """A JetStream publish to `subject` is stored in `stream`."""
    ack = await conn.nc.jetstream().publish(
        subject, b"{}", headers={"Nats-Msg-Id": f"perm-test-{next(_ids)}"}, timeout=10
    )
    assert ack.stream == stream
    assert not conn.refusals()


# --- (a) a gateway: its ticks, its outbox, its dispatch events; never settings or ticks -----


async def test_sms_gateway_cannot_publish_settings_events_or_ticks(
    deployed: DeployedNats, admin: Client
) -> None:
    settings_subject = subjects.settings_site("g-perm", "s-perm")
    tick_subject = subjects.tick_site("sms", "s-perm")
    async with connect_as(deployed.url, "sms_gateway") as gateway:
        await assert_not_acknowledged(gateway, settings_subject)
        await assert_not_acknowledged(gateway, tick_subject)
        await assert_refused(
            gateway,
            subjects.settings_group("g-perm"),
            subjects.tick_account("sms", "acct"),
            subjects.tick_site("email", "s-perm"),
            # Its own channel's outbox it may publish to (a STOP confirmation or HELP answer
            # goes through it, paced and audited); never another channel's.
            subjects.outbox("email", "s-perm"),
            subjects.dispatch("email", "s-perm"),
            subjects.optouts("g-perm", "email"),
            subjects.access_token("t-perm"),
            subjects.control("send_now", "s-perm"),
            subjects.health("config"),
        )
    assert await stored(admin, "SETTINGS", settings_subject) == 0
    assert await stored(admin, TICKS, tick_subject) == 0


async def test_sms_gateway_can_publish_its_own_events(deployed: DeployedNats) -> None:
    async with connect_as(deployed.url, "sms_gateway") as gateway:
        await assert_acknowledged(gateway, subjects.dispatch("sms", "s-perm"), "DISPATCH")
        await assert_acknowledged(gateway, subjects.credits("acct-perm"), "PROVIDERS")
        await assert_acknowledged(gateway, subjects.replies("s-perm"), "INBOUND")
        await assert_acknowledged(gateway, subjects.optouts("g-perm", "sms"), "OPTOUTS")


async def test_sms_gateway_consumes_its_ticks_and_outbox(
    deployed: DeployedNats, admin: Client
) -> None:
    js = admin.jetstream()
    await js.publish(subjects.tick_site("sms", "s-cons"), b"{}", headers={"Nats-Msg-Id": "t-1"})
    await js.publish(subjects.outbox("sms", "s-cons"), b"{}", headers={"Nats-Msg-Id": "m-1"})
    async with connect_as(deployed.url, "sms_gateway") as gateway:
        gjs = gateway.nc.jetstream()
        for durable in ("sms-ticks", "sms-outbox"):
            spec = CONSUMERS_BY_NAME[durable]
            # What the gateway does at start: (re)declare its durable, bind, fetch, ack.
            await gjs.add_consumer(spec.stream, config=spec.config())
            sub = await gjs.pull_subscribe_bind(durable=durable, stream=spec.stream)
            (msg,) = await sub.fetch(1, timeout=10)
            assert msg.subject.startswith(spec.filter_subject[:-1])
            await msg.ack_sync()
        assert not gateway.refusals()


async def test_sms_gateway_cannot_read_the_email_gateways_work(deployed: DeployedNats) -> None:
    async with connect_as(deployed.url, "sms_gateway") as gateway:
        gjs = gateway.nc.jetstream()
        with pytest.raises(nats.errors.TimeoutError):
            await gjs.add_consumer(
                TICKS, config=CONSUMERS_BY_NAME["email-ticks"].config(), timeout=1.5
            )
        # Its own durable's name with another filter is refused too: the create subject
        # carries the filter.
        with pytest.raises(nats.errors.TimeoutError):
            await gjs.add_consumer(
                TICKS,
                config=ConsumerConfig(
                    name="sms-ticks", durable_name="sms-ticks", filter_subject="ticks.email.>"
                ),
                timeout=1.5,
            )
        # Nor an ephemeral reader on the work queues, nor another durable's messages.
        await assert_refused(
            gateway,
            "$JS.API.CONSUMER.CREATE.OUTBOX.reader-1.outbox.email.>",
            "$JS.API.CONSUMER.MSG.NEXT.OUTBOX.email-outbox",
            "$JS.API.CONSUMER.MSG.NEXT.TICKS.email-ticks",
        )
        for create in (
            "$JS.API.CONSUMER.CREATE.TICKS.email-ticks.ticks.email.>",
            "$JS.API.CONSUMER.CREATE.TICKS.sms-ticks.ticks.email.>",
        ):
            assert gateway.refused("publish", create)()


# --- (b) practice systems: per-group producer users, tests/integration/security/
#     test_producer_credentials.py (the users are generated from the groups' sites) ------------


# --- (c) the audit service: read-only ---------------------------------------------------------


async def test_audit_cannot_publish_any_event(deployed: DeployedNats) -> None:
    async with connect_as(deployed.url, "audit") as audit:
        await assert_not_acknowledged(audit, subjects.dispatch("sms", "s-aud"))
        await assert_refused(
            audit,
            *EVENT_SUBJECTS,
            subjects.health("config"),
            "$JS.API.STREAM.PURGE.AUDIT",
            "$JS.API.STREAM.DELETE.AUDIT",
            "$JS.API.STREAM.MSG.DELETE.AUDIT",
        )
        # It reads: stream information and its trail.
        info = await audit.nc.jetstream().stream_info("AUDIT")
        assert info.config.name == "AUDIT"
        assert not any("$js.api.stream.info" in r for r in audit.refusals())


# --- (d) the scheduler: ticks, never settings ---------------------------------------------------


async def test_scheduler_publishes_ticks_but_not_settings(
    deployed: DeployedNats, admin: Client
) -> None:
    async with connect_as(deployed.url, "scheduler") as scheduler:
        await assert_acknowledged(scheduler, subjects.tick_site("sms", "s-sch"), TICKS)
        await assert_acknowledged(scheduler, subjects.tick_account("sms", "acct-sch"), TICKS)
        await assert_acknowledged(scheduler, subjects.tick_site("email", "s-sch"), TICKS)
        settings_subject = subjects.settings_site("g-sch", "s-sch")
        await assert_not_acknowledged(scheduler, settings_subject)
        await assert_refused(
            scheduler,
            subjects.outbox("sms", "s-sch"),
            subjects.dispatch("sms", "s-sch"),
            subjects.control("send_now", "s-sch"),
            subjects.optouts("g-sch", "sms"),
        )
    assert await stored(admin, "SETTINGS", settings_subject) == 0


# --- nobody but admin manages streams ------------------------------------------------------------


@pytest.mark.parametrize("user", SERVICE_USERS)
async def test_only_admin_manages_streams_and_consumers(deployed: DeployedNats, user: str) -> None:
    async with connect_as(deployed.url, user) as conn:
        await assert_refused(
            conn,
            "$JS.API.STREAM.CREATE.EVIL",
            "$JS.API.STREAM.UPDATE.SETTINGS",
            "$JS.API.STREAM.DELETE.SETTINGS",
            "$JS.API.STREAM.PURGE.OUTBOX",
            "$JS.API.CONSUMER.DELETE.OUTBOX.sms-outbox",
            "$JS.API.CONSUMER.DELETE.TICKS.email-ticks",
        )
