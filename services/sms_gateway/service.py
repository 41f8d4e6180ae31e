"""Composition root of the sms_gateway service.

The delivery engine (`shared.dispatch`) does intake, ticks, claims, pacing, retries, recovery
and terminal events; this service plugs the SMS side into it (`SmsAdapter`), and adds what only
SMS has: provider adapters, credits, webhooks for receipts and replies, opt-outs, and the
provider test the config service asks for over request/reply.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from services.sms_gateway import tables
from services.sms_gateway.account_sites import AccountSites
from services.sms_gateway.adapter import SmsAdapter
from services.sms_gateway.credits import Credits
from services.sms_gateway.events import GatewayEvents
from services.sms_gateway.providers import NotConfigured, Providers
from services.sms_gateway.providers.base import Balance, ProviderError
from services.sms_gateway.replies import Replies
from services.sms_gateway.send_process import ClientOptions, SendProcess
from services.sms_gateway.settings import Settings
from services.sms_gateway.trust import Trust
from services.sms_gateway.webhooks import Webhooks
from shared.bus import subjects
from shared.bus.deadletter import NatsDeadLetters
from shared.bus.rpc import BadRequest, raw_body, request_object
from shared.dispatch.engine import DispatchEngine, follow_sites, sql_parts
from shared.dispatch.queue import MessageQueue
from shared.dispatch.schema import DispatchTables
from shared.dispatch.subscribers import declare_subscribers
from shared.events.schemas.providers import ProviderTested
from shared.runtime.service import BaseService, ServiceContext
from shared.secrets import SecretBox
from shared.sites import SiteDirectory
from shared.suppression import SuppressionList

log = logging.getLogger(__name__)

PROVIDER_TEST_SECONDS = 12.0
"""The config service waits 15 s for the answer; the provider gets 12 of them."""


class SmsGatewayService(BaseService):
    """SMS through provider accounts, at the pace ticks allow; receipts, replies, credits."""

    name = "sms_gateway"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.dispatch: DispatchTables = tables.DISPATCH
        self.adapter = SmsAdapter(self)
        self.engine: DispatchEngine[
            MessageQueue, SiteDirectory
        ]  # built in start(), once the database and NATS are there
        self.events = GatewayEvents(self)
        self.credits = Credits(self)
        self.account_sites = AccountSites()
        self.replies = Replies(self)
        self.webhooks = Webhooks(self)
        self.trust = Trust(self)
        self.providers: Providers
        self.send_process: SendProcess | None = None
        self.suppression: SuppressionList
        self.ctx: ServiceContext

    def migrations(self) -> Path:
        """The queue/ledger tables (sms_0001) and the gateway's own (sms_0002)."""
        return Path(__file__).parent / "migrations"

    def http_app(self, ctx: ServiceContext) -> ASGIApp:
        """Provider webhooks (the simulator's only where the deployment enables it)."""
        return self.webhooks.app(simulator=ctx.settings.sms_simulator_enabled)

    def register(self, ctx: ServiceContext) -> None:
        """The engine's consumers and the provider-test endpoint."""
        declare_subscribers(
            ctx.broker, channel="sms", tuning=self.settings.engine(), engine=lambda: self.engine
        )

        @ctx.broker.subscriber(
            subjects.rpc("sms_gateway", "provider_test"),
            queue="sms_gateway",
            decoder=raw_body,
            title="sms-gateway provider test",
            description="Request/reply: {site_id, group_id, actor} → {ok, balance, unit, "
            "error, provider}; one replica answers.",
        )
        async def provider_test(body: bytes) -> dict[str, Any]:
            try:
                request = request_object(body, '{"site_id": "…", "group_id": "…"}')
            except BadRequest as exc:
                return _answer(False, error=str(exc))
            return await self.provider_test(request)

    def webhook_base_url(self) -> str:
        """Where providers reach this gateway's webhooks."""
        if self.settings.webhook_base_url:
            return self.settings.webhook_base_url.rstrip("/")
        s = self.ctx.settings
        host = "127.0.0.1" if s.http_host in ("0.0.0.0", "::", "") else s.http_host
        return f"http://{host}:{s.sms_gateway_http_port}"

    async def start(self, ctx: ServiceContext) -> None:
        """Provider client, suppression lists, then the engine and the balance reports."""
        self.ctx = ctx
        options = ClientOptions(
            timeout=self.settings.http_timeout_seconds,
            max_connections=self.settings.max_connections,
            # Below the 5 s after which common servers (uvicorn, many load balancers) close
            # idle connections: a send written onto a connection the server is closing gets
            # no answer and must be looked up instead of being known.
            keepalive_expiry=2.0,
            outbound_allow=ctx.settings.outbound_allow,
        )
        if self.settings.send_process:
            self.send_process = SendProcess(options)
            await self.send_process.start()
        self.providers = Providers(
            options.client(),
            SecretBox.from_settings(ctx.settings),
            twilio_status_callback=f"{self.webhook_base_url()}/webhooks/sms/twilio/status",
            sends=self.send_process,
            simulator_enabled=ctx.settings.sms_simulator_enabled,
        )
        self.suppression = SuppressionList(ctx.nc)
        ctx.spawn(self.suppression.follow(), "suppression-lists")
        suppression = self.suppression

        async def lists_loaded() -> bool:
            return suppression.ready.is_set()

        ctx.health.add_check("suppression", lists_loaded)
        await asyncio.wait_for(suppression.ready.wait(), ctx.settings.startup_timeout_seconds)
        parts = sql_parts(
            ctx.db, ctx.nc, self.dispatch, "sms", instance_id=ctx.settings.instance_id
        )
        sites = SiteDirectory(ctx.nc)
        self.engine = DispatchEngine(
            channel="sms",
            adapter=self.adapter,
            queue=parts.queue,
            limits=parts.limits,
            relay=parts.relay,
            recorder=parts.recorder,
            sites=sites,
            dead_letters=NatsDeadLetters(ctx.nc),
            tuning=self.settings.engine(),
        )
        await follow_sites(ctx, sites)
        await self.engine.start(ctx)
        ctx.spawn(self.credits.run(), "balance-reports")

    async def drain(self, ctx: ServiceContext) -> None:
        """Finish sends in flight, publish what is pending, close the provider client."""
        await self.engine.drain()
        try:
            await self.credits.flush()
            await self.engine.relay.flush()
        except Exception:
            log.exception("could not publish the last events; they stay in the outbox table")
        if self.send_process is not None:
            await self.send_process.close()
        await self.providers.client.aclose()

    async def provider_test(self, body: Any) -> dict[str, Any]:
        """Check a site's provider credentials and report the balance (config service asks)."""
        if not isinstance(body, dict):
            return _answer(False, error="the request must be a JSON object")
        site_id, group_id = str(body.get("site_id", "")), str(body.get("group_id", ""))
        actor = str(body.get("actor") or "unknown")
        if not site_id or not group_id:
            return _answer(False, error="fields 'site_id' and 'group_id' are required")
        site = await self.engine.sites.wait_for(site_id, patience=3.0)
        if site is None or site.group_id != group_id:
            return _answer(False, error=f"unknown site {site_id} in group {group_id}")
        kind = site.settings.sms.provider.kind
        account = self.adapter.account_for(site)
        if account is None:
            return _answer(False, error="no SMS provider is selected", provider=kind)
        balance: Balance | None = None
        error: str | None = None
        try:
            provider = self.providers.for_site(site)
            balance = await asyncio.wait_for(provider.balance(), PROVIDER_TEST_SECONDS)
        except (NotConfigured, ProviderError) as exc:
            error = str(exc)
        except TimeoutError:
            error = f"the provider did not answer within {PROVIDER_TEST_SECONDS:g} s"
        tested = ProviderTested(
            account=account,
            provider=kind,
            group_id=site.group_id,
            site_id=site.site_id,
            ok=balance is not None,
            balance=balance.amount if balance else None,
            unit=balance.unit if balance else None,
            error=error,
        )
        await self.events.emit(
            subjects.provider_health(account),
            tested,
            group_id=site.group_id,
            site_id=site.site_id,
            about=account,
            actor=actor,
        )
        if balance is None:
            return _answer(False, error=error, provider=kind)
        # Before the answer: once the config service hears "ok", webhooks signed with these
        # credentials must verify on every replica.
        await self.trust.record_test(site)
        await self.credits.report(
            account,
            kind,
            balance.unit,
            balance.amount,
            "test",
            site.site_id,
            currency=balance.currency,
        )
        return _answer(True, balance=balance.amount, unit=balance.unit, provider=kind)


def _answer(
    ok: bool,
    *,
    balance: float | None = None,
    unit: str | None = None,
    error: str | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    return {"ok": ok, "balance": balance, "unit": unit, "error": error, "provider": provider}


def definition() -> SmsGatewayService:
    """The service as the runtime runs it."""
    return SmsGatewayService()
