"""The composition root of the SMS gateway: every part built here, once, with what it needs.

Nothing reaches through a service object: each part's constructor names its dependencies.
The delivery engine is built here only (`build_engine`), so a change to how the engine is
constructed touches this module alone.

The runtime asks for the bus subscribers (`register`) before it connects NATS and migrates
the database, and the engine still makes its queue, limiter, event relay and site directory in
its own `start()`. So `build` runs at `register`; the session factory is bound to the database
in `connect`, and what needs the connection or the engine's parts gets a getter read at the
time of use (`lambda: engine.queue`). When the engine is built in one step, pass the parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sms_gateway.adapters import tables
from services.sms_gateway.adapters.account_sites import AccountSites
from services.sms_gateway.adapters.channel import SmsAdapter, account_for
from services.sms_gateway.adapters.credit_store import CreditStates, HoldRecords
from services.sms_gateway.adapters.ledger import Ledger
from services.sms_gateway.adapters.optouts import BusOptOuts
from services.sms_gateway.adapters.outbox import GatewayEvents
from services.sms_gateway.adapters.providers import Providers
from services.sms_gateway.adapters.send_process import ClientOptions, SendProcess
from services.sms_gateway.adapters.trust_store import Trust
from services.sms_gateway.config import GatewayConfig
from services.sms_gateway.entrypoints.webhooks import Webhooks
from services.sms_gateway.handlers.credits import Credits, CreditTiming
from services.sms_gateway.handlers.provider_test import ProviderTestHandler
from services.sms_gateway.handlers.receipt import ReceiptHandler
from services.sms_gateway.handlers.reply import ReplyHandler
from shared.dispatch.adapter import ChannelAdapter
from shared.dispatch.engine import DispatchEngine
from shared.runtime.service import ServiceContext
from shared.secrets import SecretBox
from shared.sites import Site
from shared.suppression import SuppressionList

KEEPALIVE_SECONDS = 2.0
"""Below the 5 s after which common servers (uvicorn, many load balancers) close idle
connections: a send written onto a connection the server is closing gets no answer and must be
looked up instead of being known."""


@dataclass
class Gateway:
    """Everything one running replica is made of."""

    engine: DispatchEngine
    sessions: async_sessionmaker[AsyncSession]
    channel: SmsAdapter
    providers: Providers
    send_process: SendProcess | None
    events: GatewayEvents
    credits: Credits
    receipts: ReceiptHandler
    replies: ReplyHandler
    provider_test: ProviderTestHandler
    webhooks: Webhooks
    suppression: SuppressionList | None = field(default=None)
    """The group's opt-outs, followed from the bus (made in `connect`)."""

    def suppression_list(self) -> SuppressionList:
        """The suppression list (after `connect`)."""
        if self.suppression is None:
            raise RuntimeError("the SMS gateway is not connected yet")
        return self.suppression


def connect(gateway: Gateway, ctx: ServiceContext) -> None:
    """Bind the built replica to the database and NATS (once the runtime has both)."""
    gateway.sessions.configure(bind=ctx.engine)
    gateway.suppression = SuppressionList(ctx.nc)


def webhook_base_url(config: GatewayConfig, ctx: ServiceContext) -> str:
    """Where providers reach this replica's webhooks."""
    if config.webhook_base_url:
        return config.webhook_base_url.rstrip("/")
    s = ctx.settings
    host = "127.0.0.1" if s.http_host in ("0.0.0.0", "::", "") else s.http_host
    return f"http://{host}:{s.sms_gateway_http_port}"


def build_engine(config: GatewayConfig, adapter: ChannelAdapter) -> DispatchEngine:
    """The delivery engine with the SMS side plugged in."""
    return DispatchEngine(
        channel="sms", adapter=adapter, tables=tables.DISPATCH, settings=config.engine()
    )


def build(config: GatewayConfig, ctx: ServiceContext) -> Gateway:
    """Build one replica (nothing connected, nothing started)."""
    # Bound to the database in `connect`.
    sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(expire_on_commit=False)
    dispatch = tables.DISPATCH

    def nc() -> Client:
        return ctx.nc

    base_url = webhook_base_url(config, ctx)
    box = SecretBox.from_settings(ctx.settings)
    options = ClientOptions(
        timeout=config.http_timeout_seconds,
        max_connections=config.max_connections,
        keepalive_expiry=KEEPALIVE_SECONDS,
        outbound_allow=ctx.settings.outbound_allow,
    )
    send_process = SendProcess(options) if config.send_process else None
    providers = Providers(
        options.client(),
        box,
        twilio_status_callback=f"{base_url}/webhooks/sms/twilio/status",
        sends=send_process,
        simulator_enabled=ctx.settings.sms_simulator_enabled,
    )
    account_sites = AccountSites()
    ledger = Ledger(sessions, dispatch.messages)
    optouts = BusOptOuts(nc)
    engine: DispatchEngine
    gateway: Gateway

    def wake_relay() -> None:
        engine.relay.nudge()

    def sites_of(account: str) -> Iterator[Site]:
        return (s for s in engine.sites.all() if account_for(s) == account)

    events = GatewayEvents(sessions, dispatch.pending_events, wake_relay)
    credits = Credits(
        CreditTiming(config.balance_report_seconds, config.resume_poll_seconds),
        sessions,
        events,
        CreditStates(sessions),
        HoldRecords(sessions, dispatch.limiters),
        providers,
        limits=lambda: engine.limits,
        sites_of=sites_of,
    )
    channel = SmsAdapter(
        default_sender=config.default_sender_id,
        suppression=lambda: gateway.suppression_list(),
        providers=providers,
        credits=credits,
        ledger=ledger,
        queue=lambda: engine.queue,
        optouts=optouts,
    )
    engine = build_engine(config, channel)
    receipts = ReceiptHandler(
        queue=lambda: engine.queue,
        ledger=ledger,
        account_sites=account_sites,
        sites=lambda: engine.sites,
        wake_relay=wake_relay,
        resume_held=credits.resume_held,
    )
    replies = ReplyHandler(
        sessions=sessions,
        events=events,
        ledger=ledger,
        account_sites=account_sites,
        sites=lambda: engine.sites,
        suppression=lambda: gateway.suppression_list(),
        queue=lambda: engine.queue,
        optouts=optouts,
    )
    trust = Trust(box, sessions)
    provider_test = ProviderTestHandler(
        sites=lambda: engine.sites,
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
        sites=lambda: engine.sites,
        trust=trust,
        receipts=receipts,
        replies=replies,
        nc=nc,
    )
    gateway = Gateway(
        engine=engine,
        sessions=sessions,
        channel=channel,
        providers=providers,
        send_process=send_process,
        events=events,
        credits=credits,
        receipts=receipts,
        replies=replies,
        provider_test=provider_test,
        webhooks=webhooks,
    )
    return gateway
