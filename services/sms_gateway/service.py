"""The sms_gateway service's life: build (`composition`), start, serve, drain.

The delivery engine (`shared.dispatch`) does intake, ticks, claims, pacing, retries, recovery
and terminal events; this service plugs the SMS side into it (`adapters.channel`), and adds
what only SMS has: provider adapters, credits, webhooks for receipts and replies, opt-outs,
and the provider test the config service asks for over request/reply.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from starlette.types import ASGIApp

from services.sms_gateway import composition
from services.sms_gateway.composition import Gateway, SmsEngine
from services.sms_gateway.config import GatewayConfig
from services.sms_gateway.entrypoints import subscribers
from shared.dispatch.engine import follow_sites
from shared.dispatch.subscribers import declare_subscribers
from shared.runtime.service import BaseService, ServiceContext

log = logging.getLogger(__name__)


class SmsGatewayService(BaseService):
    """SMS through provider accounts, at the pace ticks allow; receipts, replies, credits."""

    name = "sms_gateway"

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self.gateway: Gateway | None = None
        self.ctx: ServiceContext

    @property
    def engine(self) -> SmsEngine:
        """The running replica's delivery engine."""
        return self._built().engine

    def _built(self) -> Gateway:
        if self.gateway is None:
            raise RuntimeError("the sms_gateway service has not started")
        return self.gateway

    def migrations(self) -> Path:
        """The queue/ledger tables and the gateway's own."""
        return Path(__file__).parent / "migrations"

    def webhook_base_url(self) -> str:
        """Where providers reach this replica's webhooks."""
        return composition.webhook_base_url(self.config, self.ctx)

    def register(self, ctx: ServiceContext) -> None:
        """Build the replica and declare its subscribers (before NATS is connected)."""
        self.ctx = ctx
        gw = self.gateway = composition.build(self.config, ctx)
        declare_subscribers(
            ctx.broker, channel="sms", tuning=self.config.engine(), engine=lambda: self.engine
        )
        subscribers.register(ctx.broker, gw.provider_test)

    def http_app(self, ctx: ServiceContext) -> ASGIApp:
        """Provider webhooks (the simulator's only where the deployment enables it)."""
        return self._built().webhooks.app(simulator=ctx.config.sms_simulator_enabled)

    async def start(self, ctx: ServiceContext) -> None:
        """Connect the replica, load the suppression lists, then start the engine and the
        balance reports."""
        gw = self._built()
        connected = composition.connect(gw, ctx)
        # Tags are computed from here on (suppression lists, replies): load their key first.
        await connected.personal.ready()
        if gw.send_process is not None:
            await gw.send_process.start()
        suppression = connected.suppression
        ctx.spawn(suppression.follow(), "suppression-lists")

        async def lists_loaded() -> bool:
            return suppression.ready.is_set()

        ctx.health.add_check("suppression", lists_loaded)
        await asyncio.wait_for(suppression.ready.wait(), ctx.config.startup_timeout_seconds)
        await follow_sites(ctx, connected.sites)
        await gw.engine.start(ctx)
        ctx.spawn(gw.credits.run(), "balance-reports")

    async def drain(self, ctx: ServiceContext) -> None:
        """Finish sends in flight, publish what is pending, close the provider client."""
        gw = self.gateway
        if gw is None or gw.connected is None:
            return  # never started: nothing in flight, nothing opened
        await gw.engine.drain()
        try:
            await gw.credits.flush()
            await gw.engine.relay.flush()
        except Exception:
            log.exception("could not publish the last events; they stay in the outbox table")
        if gw.send_process is not None:
            await gw.send_process.close()
        await gw.connected.providers.client.aclose()


def definition() -> SmsGatewayService:
    """The service as the runtime runs it."""
    return SmsGatewayService()
