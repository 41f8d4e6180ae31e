"""Composition root of the email gateway: the one place that builds its parts and wires them.

Process-level parts (the outbound guard, the SMTP pool, the Sent-folder sessions) are made with
the service; the parts that need the database and NATS are built in `start()`, in one pass and
in dependency order: the dispatch SQL parts, the opt-out follower, the IMAP receiver, the email
channel adapter, then the delivery engine composed from them (plus the attachment-release
command), then the account handlers. Entrypoints (`entrypoints/`) are declared in `register()`
and hand their messages to what `start()` built; the broker delivers nothing before that.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from nats.aio.msg import Msg
from starlette.types import ASGIApp

from services.email_gateway.adapters import tables
from services.email_gateway.adapters.account_health import AccountHealth
from services.email_gateway.adapters.channel import EmailAdapter
from services.email_gateway.adapters.erasure import purge_sender, purge_soft_bounces
from services.email_gateway.adapters.graph.client import GraphMail
from services.email_gateway.adapters.imap import SessionCache
from services.email_gateway.adapters.inbound_sealing import seal_clear_inbound
from services.email_gateway.adapters.oauth_tokens import RefreshTokenStore
from services.email_gateway.adapters.quarantine import Quarantine
from services.email_gateway.adapters.receiving import Receiver
from services.email_gateway.adapters.smtp import SmtpPool
from services.email_gateway.config import EmailGatewayConfig
from services.email_gateway.entrypoints import subscribers
from services.email_gateway.entrypoints.http import Authenticate, attachments_app
from services.email_gateway.handlers.accounts import Accounts
from services.email_gateway.handlers.attachments import Download, release_attachment, released
from services.email_gateway.handlers.opt_outs import OptOutFollower
from shared.bus.deadletter import NatsDeadLetters
from shared.dispatch.engine import DispatchEngine, follow_sites, sql_parts
from shared.dispatch.queue import MessageQueue
from shared.dispatch.tuning import EngineTuning
from shared.domain.destinations import AllowList
from shared.email_auth.provider import TokenProvider
from shared.events.envelope import Envelope
from shared.events.schemas.control import AttachmentReleaseRequested
from shared.events.schemas.privacy import RecipientErased
from shared.net.outbound import OutboundGuard, Resolver, guarded_transport, system_resolver
from shared.privacy.codec import PersonalData
from shared.privacy.retention import metadata_retention_forever
from shared.runtime.service import BaseService, ServiceContext
from shared.secrets import SecretBox
from shared.sites import SiteDirectory
from shared.tokens import Principal, TokenRegistry
from shared.unsubscribe import UnsubscribeTokens

log = logging.getLogger(__name__)


def engine_tuning(s: EmailGatewayConfig) -> EngineTuning:
    """The delivery engine's knobs from the gateway's process configuration."""
    return EngineTuning(
        lease_seconds=s.lease_seconds,
        recovery_seconds=s.recovery_seconds,
        parallel_sends=s.parallel_sends,
        max_attempts=s.max_attempts,
        retry_base_seconds=s.retry_base_seconds,
        retry_cap_seconds=s.retry_cap_seconds,
        retention_days=s.retention_days,
    )


class EmailGatewayService(BaseService):
    """SMTP sending at each account's pace, IMAP receiving, attachments kept safe."""

    name = "email_gateway"

    def __init__(
        self, settings: EmailGatewayConfig | None = None, *, resolver: Resolver = system_resolver
    ) -> None:
        self.settings = s = settings or EmailGatewayConfig()
        self.tuning = engine_tuning(s)
        # Strict (public only) until start() reads the operator's STAGGER_OUTBOUND_ALLOW.
        self.guard = OutboundGuard.parse("", resolver)
        self.pool = SmtpPool(s, self.guard)
        self._tls = ssl.create_default_context()
        if s.ca_file is not None:
            self._tls.load_verify_locations(cafile=str(s.ca_file))
        self.sent_sessions = SessionCache(
            s.imap_timeout_seconds, self._tls, guard=self.guard, max_bytes=s.inbound_max_bytes
        )
        # Built in start(), once the database and NATS are there.
        self._ctx: ServiceContext | None = None
        self.engine: DispatchEngine[MessageQueue, SiteDirectory]
        self.adapter: EmailAdapter
        self.accounts: Accounts
        self.quarantine: Quarantine | None = None
        self.tokens: TokenRegistry | None = None
        self.graph: GraphMail | None = None
        self.personal: PersonalData | None = None

    def migrations(self) -> Path:
        """The shared dispatch tables (email_0001) and the gateway's own (email_0002…)."""
        return Path(__file__).parent / "migrations"

    def register(self, ctx: ServiceContext) -> None:
        """The engine's consumers plus the account-status endpoints."""
        subscribers.declare(
            ctx.broker,
            tuning=self.tuning,
            engine=lambda: self.engine,
            accounts=lambda: self.accounts,
        )

    async def start(self, ctx: ServiceContext) -> None:
        """Build every part on this replica's database and connections, then start."""
        self._ctx = ctx
        s = self.settings
        box = SecretBox.from_config(ctx.config)
        # The pool, the Sent-folder sessions and the receiver share this one guard.
        self.guard.allow = AllowList.parse(ctx.config.outbound_allow)
        self.quarantine = quarantine = Quarantine(s.quarantine_path(ctx.config.var_dir))
        await asyncio.to_thread(quarantine.ensure)
        await self.pool.prepare()
        parts = sql_parts(
            ctx.db, ctx.nc, tables.DISPATCH, "email", instance_id=ctx.config.instance_id
        )
        # Personal fields: sealed at intake, opened for the SMTP submission (docs/privacy.md).
        personal = self.personal = parts.queue.personal = await PersonalData(ctx.nc, box).ready()
        # Rows stored before sealing was introduced are sealed once, in the background.
        ctx.spawn(parts.queue.seal_stored_until_done(), "seal-stored")
        ctx.spawn(self._seal_inbound(ctx, personal), "seal-inbound")
        nudge = parts.relay.nudge
        suppression = OptOutFollower(ctx.nc, parts.queue, nudge, personal.tag)

        async def purge(erased: RecipientErased) -> None:
            tag = erased.recipient_tag
            personal.keys.forget_cached(f"{erased.group_id}.{tag}.")

            def is_erased(address: str) -> bool:
                # A row may name the address or, from a sealed ledger, its salted hash.
                return address == tag or personal.tag(erased.group_id, address) == tag

            await purge_sender(ctx.db, quarantine, erased.group_id, is_erased)
            await purge_soft_bounces(ctx.db, erased.group_id, is_erased)

        suppression.on_erased.append(purge)
        ctx.spawn(
            metadata_retention_forever(suppression.retention, parts.queue), "metadata-retention"
        )
        # OAuth tokens are fetched through the same outbound guard as SMTP and IMAP; rotated
        # refresh tokens are kept sealed in the database.
        rotated = RefreshTokenStore(ctx.db, box)
        oauth_tokens = TokenProvider(
            timeout=s.smtp_timeout_seconds,
            transport=lambda: guarded_transport(self.guard, verify=self._tls, trust_env=False),
            save_rotated=rotated.save,
            load_rotated=rotated.load,
        )
        self.graph = GraphMail(
            timeout=s.smtp_timeout_seconds,
            transport=lambda: guarded_transport(self.guard, verify=self._tls, trust_env=False),
        )
        receiver = Receiver(
            tokens=oauth_tokens,
            db=ctx.db,
            queue=parts.queue,
            quarantine=quarantine,
            settings=s,
            box=box,
            tls=self._tls,
            nudge=nudge,
            guard=self.guard,
        )
        self.adapter = EmailAdapter(
            token_provider=oauth_tokens,
            graph=self.graph,
            settings=s,
            public_url=ctx.config.public_url,
            box=box,
            tokens=UnsubscribeTokens.from_config(ctx.config),
            pool=self.pool,
            sent_sessions=self.sent_sessions,
            health=AccountHealth(ctx.db, nudge),
            suppression=suppression,
            receiver=receiver,
        )
        sites = SiteDirectory(ctx.nc)
        db = ctx.db

        async def release_command(event: Envelope, msg: Msg) -> None:
            await release_attachment(db, event)

        self.engine = DispatchEngine(
            channel="email",
            adapter=self.adapter,
            queue=parts.queue,
            limits=parts.limits,
            relay=parts.relay,
            recorder=parts.recorder,
            sites=sites,
            dead_letters=NatsDeadLetters(ctx.nc),
            tuning=self.tuning,
            commands={AttachmentReleaseRequested: release_command},
        )
        self.accounts = Accounts(sites, self.adapter, box)
        self.tokens = TokenRegistry(ctx.nc)
        ctx.spawn(self.tokens.follow(), "tokens")
        await follow_sites(ctx, sites)
        await self.engine.start(ctx)
        ctx.spawn(suppression.follow(), "suppression")
        ctx.spawn(self._housekeeping(), "smtp-idle")

        async def suppression_loaded() -> bool:
            return suppression.ready.is_set()

        ctx.health.add_check("suppression", suppression_loaded)
        await asyncio.wait_for(suppression.ready.wait(), ctx.config.startup_timeout_seconds)

    @staticmethod
    async def _seal_inbound(ctx: ServiceContext, personal: PersonalData) -> None:
        """Inbound rows recorded before sealing, sealed once (retried after a failure)."""
        while True:
            try:
                if sealed := await seal_clear_inbound(ctx.db, personal):
                    log.info("stored inbound mail sealed", extra={"rows": sealed})
                return
            except Exception:
                log.exception("sealing stored inbound mail failed; retrying")
                await asyncio.sleep(30.0)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            try:
                await self.pool.close_idle()
                await self.sent_sessions.close_idle()
            except Exception:
                log.exception("closing idle connections failed")

    async def drain(self, ctx: ServiceContext) -> None:
        """Finish sends in flight, publish pending events, close connections."""
        await self.engine.drain()
        await self.pool.close()
        await self.sent_sessions.close()
        if self.graph is not None:
            await self.graph.close()

    def http_app(self, ctx: ServiceContext) -> ASGIApp:
        """`GET /attachments/{attachment_id}`: a released attachment, for staff."""

        def authenticate() -> Authenticate | None:
            if self.tokens is None or self.quarantine is None:
                return None
            return self.tokens.authenticate

        async def lookup(who: Principal, attachment: str) -> Download:
            assert self.quarantine is not None
            opener = None if self.personal is None else self.personal.open
            return await released(ctx.db, self.quarantine, who, attachment, opener)

        return attachments_app(authenticate, lookup)
