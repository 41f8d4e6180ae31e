"""The composition root of the SMS gateway: every part built here, once, with what it needs.

Nothing reaches through a service object: each part's constructor names its dependencies.

The runtime asks for the bus subscribers (`register`) before it connects NATS and migrates
the database. So `build` runs at `register` and opens nothing; `connect` (at `start`) binds
the session factory to the database and makes what needs the database, the key ring or NATS:
the providers, trust, the suppression list, and the delivery engine with its SQL parts (built
in one step, `build_engine`). Parts made before that read those through a getter at the time
of use (`lambda: gateway.parts().engine`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sms_gateway.adapters import tables, unrouted
from services.sms_gateway.adapters.account_sites import AccountSites
from services.sms_gateway.adapters.credit_store import CreditStates, HoldRecords
from services.sms_gateway.adapters.ledger import Ledger
from services.sms_gateway.adapters.optouts import BusOptOuts
from services.sms_gateway.adapters.outbox import GatewayEvents
from services.sms_gateway.adapters.providers import Providers
from services.sms_gateway.adapters.send_process import ClientOptions, SendProcess
from services.sms_gateway.adapters.trust_store import Trust
from services.sms_gateway.config import GatewayConfig
from services.sms_gateway.entrypoints.webhooks import Webhooks
from services.sms_gateway.handlers.channel import SmsAdapter, account_for, failover_site
from services.sms_gateway.handlers.credits import Credits, CreditTiming
from services.sms_gateway.handlers.provider_test import ProviderTestHandler
from services.sms_gateway.handlers.receipt import ReceiptHandler
from services.sms_gateway.handlers.reply import ReplyHandler
from shared.bus.deadletter import NatsDeadLetters
from shared.dispatch.adapter import ChannelAdapter
from shared.dispatch.engine import DispatchEngine, sql_parts
from shared.dispatch.queue import MessageQueue
from shared.events.schemas.privacy import RecipientErased
from shared.privacy.codec import PersonalData
from shared.privacy.retention import metadata_retention_forever
from shared.runtime.service import ServiceContext
from shared.secrets import SecretBox
from shared.sites import Site, SiteDirectory
from shared.suppression import SuppressionList

KEEPALIVE_SECONDS = 2.0
"""Below the 5 s after which common servers (uvicorn, many load balancers) close idle
connections: a send written onto a connection the server is closing gets no answer and must be
looked up instead of being known."""


SmsEngine = DispatchEngine[MessageQueue, SiteDirectory]


@dataclass
class Connected:
    """What needs the key ring or the NATS connection, made in `connect`."""

    providers: Providers
    trust: Trust
    suppression: SuppressionList
    engine: SmsEngine
    sites: SiteDirectory
    personal: PersonalData


@dataclass
class Gateway:
    """Everything one running replica is made of."""

    sessions: async_sessionmaker[AsyncSession]
    send_process: SendProcess | None
    channel: SmsAdapter
    events: GatewayEvents
    credits: Credits
    receipts: ReceiptHandler
    replies: ReplyHandler
    provider_test: ProviderTestHandler
    webhooks: Webhooks
    connect: Callable[[ServiceContext], Connected]
    connected: Connected | None = field(default=None)

    def parts(self) -> Connected:
        """The parts made in `connect`."""
        if self.connected is None:
            raise RuntimeError("the SMS gateway is not connected yet")
        return self.connected

    @property
    def engine(self) -> SmsEngine:
        """The replica's delivery engine (made in `connect`)."""
        return self.parts().engine


def connect(gateway: Gateway, ctx: ServiceContext) -> Connected:
    """Bind the built replica to the database, the key ring and NATS (once the runtime has
    them: generating documents only declares the subscribers and opens nothing)."""
    gateway.sessions.configure(bind=ctx.engine)
    gateway.connected = gateway.connect(ctx)
    return gateway.connected


def webhook_base_url(config: GatewayConfig, ctx: ServiceContext) -> str:
    """Where providers reach this replica's webhooks."""
    if config.webhook_base_url:
        return config.webhook_base_url.rstrip("/")
    s = ctx.config
    host = "127.0.0.1" if s.http_host in ("0.0.0.0", "::", "") else s.http_host
    return f"http://{host}:{s.sms_gateway_http_port}"


def build_engine(config: GatewayConfig, ctx: ServiceContext, adapter: ChannelAdapter) -> SmsEngine:
    """The delivery engine with the SMS side plugged in, on its SQL parts."""
    parts = sql_parts(ctx.db, ctx.nc, tables.DISPATCH, "sms", instance_id=ctx.config.instance_id)
    return DispatchEngine(
        channel="sms",
        adapter=adapter,
        queue=parts.queue,
        limits=parts.limits,
        relay=parts.relay,
        recorder=parts.recorder,
        sites=SiteDirectory(ctx.nc),
        dead_letters=NatsDeadLetters(ctx.nc),
        tuning=config.engine(),
    )


def build(config: GatewayConfig, ctx: ServiceContext) -> Gateway:
    """Build one replica (nothing connected, nothing started)."""
    # Bound to the database in `connect`.
    sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(expire_on_commit=False)
    dispatch = tables.DISPATCH

    def nc() -> Client:
        return ctx.nc

    base_url = webhook_base_url(config, ctx)
    options = ClientOptions(
        timeout=config.http_timeout_seconds,
        max_connections=config.max_connections,
        keepalive_expiry=KEEPALIVE_SECONDS,
        outbound_allow=ctx.config.outbound_allow,
    )
    send_process = SendProcess(options) if config.send_process else None

    def connected(ctx: ServiceContext) -> Connected:
        box = SecretBox.from_config(ctx.config)
        registry = Providers(
            options.client(),
            box,
            twilio_status_callback=f"{base_url}/webhooks/sms/twilio/status",
            sends=send_process,
            simulator_enabled=ctx.config.sms_simulator_enabled,
            report_lag_seconds=config.report_lag_seconds,
        )
        engine = build_engine(config, ctx, channel)
        # Personal fields: sealed at intake and on replies, opened for the provider call.
        personal = PersonalData(ctx.nc, box)
        engine.queue.personal = personal
        optouts.personal = personal
        replies.personal = personal
        suppression = SuppressionList(ctx.nc, personal.tag)

        async def purge(erased: RecipientErased) -> None:
            tag = erased.recipient_tag
            personal.keys.forget_cached(f"{erased.group_id}.{tag}.")
            await unrouted.purge_sender(
                sessions, lambda number: personal.tag(erased.group_id, number) == tag
            )

        suppression.on_erased.append(purge)
        # Rows stored before sealing was introduced are sealed once, in the background.
        ctx.spawn(engine.queue.seal_stored_until_done(), "seal-stored")
        ctx.spawn(
            metadata_retention_forever(suppression.retention, engine.queue), "metadata-retention"
        )
        return Connected(
            registry,
            Trust(box, sessions),
            suppression,
            engine,
            engine.sites,
            personal,
        )

    def providers() -> Providers:
        return gateway.parts().providers

    def trust() -> Trust:
        return gateway.parts().trust

    account_sites = AccountSites()
    ledger = Ledger(sessions, dispatch.messages)
    optouts = BusOptOuts(nc)
    gateway: Gateway

    def engine() -> SmsEngine:
        return gateway.parts().engine

    def wake_relay() -> None:
        engine().relay.nudge()

    def sites_of(account: str) -> Iterator[Site]:
        # A secondary account's sites as they send through it (a held secondary resumes too).
        for site in engine().sites.all():
            if account_for(site) == account:
                yield site
            elif (away := failover_site(site)) is not None and account_for(away) == account:
                yield away

    events = GatewayEvents(sessions, dispatch.pending_events, wake_relay)
    credits = Credits(
        CreditTiming(config.balance_report_seconds, config.resume_poll_seconds),
        sessions,
        events,
        CreditStates(sessions),
        HoldRecords(sessions, dispatch.limiters),
        providers,
        limits=lambda: engine().limits,
        sites_of=sites_of,
    )
    channel = SmsAdapter(
        default_sender=config.default_sender_id,
        suppression=lambda: gateway.parts().suppression,
        providers=providers,
        credits=credits,
        ledger=ledger,
        queue=lambda: engine().queue,
        optouts=optouts,
    )
    receipts = ReceiptHandler(
        queue=lambda: engine().queue,
        ledger=ledger,
        account_sites=account_sites,
        sites=lambda: engine().sites,
        wake_relay=wake_relay,
        resume_held=credits.resume_held,
    )
    replies = ReplyHandler(
        sessions=sessions,
        events=events,
        ledger=ledger,
        account_sites=account_sites,
        sites=lambda: engine().sites,
        suppression=lambda: gateway.parts().suppression,
        queue=lambda: engine().queue,
        optouts=optouts,
    )
    provider_test = ProviderTestHandler(
        sites=lambda: engine().sites,
        account_for=account_for,
        providers=providers,
        events=events,
        trust=trust,
        credits=credits,
    )
    webhooks = Webhooks(
        base_url=base_url,
        tolerance_seconds=config.webhook_tolerance_seconds,
        account_sites=account_sites,
        sites=lambda: engine().sites,
        trust=trust,
        receipts=receipts,
        replies=replies,
        nc=nc,
    )
    gateway = Gateway(
        sessions=sessions,
        send_process=send_process,
        channel=channel,
        events=events,
        credits=credits,
        receipts=receipts,
        replies=replies,
        provider_test=provider_test,
        webhooks=webhooks,
        connect=connected,
    )
    return gateway
