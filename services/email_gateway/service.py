"""Composition root of the email gateway: the shared delivery engine with the email adapter,
mailbox polling, opt-out follow-up, attachment release, and the account-status endpoints.

Subscribers (besides the engine's outbox, ticks and control consumers):

- `stagger.rpc.email_gateway.account_status` — `{"site_id"}` → `{"ok", "last_error",
  "checked_at", …}`: what the site's SMTP account last did, for the settings page;
- `stagger.rpc.email_gateway.account_test` — `{"site_id"}` → the email Test (sign in to SMTP and
  IMAP, open the inbox and Sent folder, send nothing);
- `control.email.release_attachment.<site>` (the engine's control consumer) — release a
  quarantined attachment.

HTTP (the gateway's own port): `GET /attachments/{attachment_id}` serves a *released*
attachment to a caller whose API token may see the site.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from nats.aio.client import Client
from nats.aio.msg import Msg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from services.email_gateway import tables
from services.email_gateway.adapter import EmailAdapter
from services.email_gateway.graph.client import GraphMail
from services.email_gateway.imap import SessionCache
from services.email_gateway.oauth_tokens import RefreshTokenStore
from services.email_gateway.quarantine import Quarantine
from services.email_gateway.receiver import Receiver, imap_endpoint, release
from services.email_gateway.settings import Settings
from services.email_gateway.smtp import SmtpPool
from services.email_gateway.status import AccountHealth
from shared.bus import subjects
from shared.bus.deadletter import DeadLetter, publish_dead_letters
from shared.bus.rpc import BadRequest, raw_body, request_object
from shared.dispatch.adapter import ChannelAdapter
from shared.dispatch.engine import DispatchEngine, EngineSettings
from shared.domain.accounts import email_account_id
from shared.domain.destinations import AllowList
from shared.email_auth.provider import TokenProvider
from shared.events.codec import UndecodableEvent, decode
from shared.events.schemas.control import AttachmentReleaseRequested
from shared.events.schemas.optouts import RecipientOptedOut
from shared.net.outbound import OutboundGuard, Resolver, guarded_transport, system_resolver
from shared.runtime.service import BaseService, ServiceContext
from shared.secrets import SecretBox
from shared.suppression import SuppressionList
from shared.tokens import TokenRegistry
from shared.unsubscribe import UnsubscribeTokens

log = logging.getLogger(__name__)
SITE_REQUEST = '{"site_id": "…"}'
"""The shape of the account endpoints' requests (named in the error a malformed one gets)."""


class OptOutFollower(SuppressionList):
    """The group's email suppression list; a live opt-out also ends the recipient's queued
    messages `suppressed` at once (`MessageQueue.suppress_recipient`). Opt-outs recorded while
    no replica ran are caught when each message is claimed (`EmailAdapter.check`)."""

    def __init__(self, nc: Client, engine: DispatchEngine) -> None:
        super().__init__(nc)
        self._engine = engine
        self._tasks: set[asyncio.Task[Any]] = set()

    def apply(self, data: object) -> None:
        super().apply(data)
        if self.ready.is_set() and isinstance(data, RecipientOptedOut) and data.channel == "email":
            task = asyncio.get_running_loop().create_task(self._suppress(data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _suppress(self, data: RecipientOptedOut) -> None:
        try:
            done = await self._engine.queue.suppress_recipient(
                data.group_id, data.recipient, reason=f"the recipient opted out ({data.how})"
            )
            if done:
                self._engine.relay.nudge()
        except Exception:
            log.exception("could not suppress queued messages after an opt-out")


class EmailEngine(DispatchEngine):
    """The shared engine plus the email gateway's own command (release an attachment)."""

    async def command(self, msg: Msg) -> None:
        try:
            event = decode(msg.headers, msg.data)
        except UndecodableEvent:
            await super().command(msg)  # dead-letters it
            return
        data = event.data
        if not isinstance(data, AttachmentReleaseRequested):
            await super().command(msg)
            return
        try:
            subjects.check_token(data.site_id, "site id")
        except subjects.InvalidToken as exc:
            await publish_dead_letters(
                self._ctx.nc, [DeadLetter.from_msg(msg, "email-control", str(exc))]
            )
            return
        outcome = await release(
            self._ctx.db,
            group_id=data.group_id,
            site_id=data.site_id,
            attachment=data.attachment_id,
            actor=event.actor,
            reason=data.reason,
        )
        log.info(
            "attachment release",
            extra={"attachment": data.attachment_id, "site": data.site_id, "outcome": outcome},
        )
        self.relay.nudge()


class EmailGatewayService(BaseService):
    """SMTP sending at each account's pace, IMAP receiving, attachments kept safe."""

    name = "email_gateway"

    def __init__(
        self, settings: Settings | None = None, *, resolver: Resolver = system_resolver
    ) -> None:
        self.settings = settings or Settings()
        self._ctx: ServiceContext | None = None
        self._box: SecretBox | None = None
        s = self.settings
        self.engine = EmailEngine(
            channel="email",
            adapter=cast(ChannelAdapter, None),  # bound in start(), once the database exists
            tables=tables.DISPATCH,
            settings=EngineSettings(
                lease_seconds=s.lease_seconds,
                recovery_seconds=s.recovery_seconds,
                parallel_sends=s.parallel_sends,
                max_attempts=s.max_attempts,
                retry_base_seconds=s.retry_base_seconds,
                retry_cap_seconds=s.retry_cap_seconds,
                retention_days=s.retention_days,
            ),
        )
        self.adapter: EmailAdapter | None = None
        # Strict (public only) until start() reads the operator's STAGGER_OUTBOUND_ALLOW.
        self.guard = OutboundGuard.parse("", resolver)
        self.pool = SmtpPool(s, self.guard)
        self.quarantine: Quarantine | None = None
        self.tokens: TokenRegistry | None = None
        self._tls = ssl.create_default_context()
        if s.ca_file is not None:
            self._tls.load_verify_locations(cafile=str(s.ca_file))
        self.sent_sessions = SessionCache(
            s.imap_timeout_seconds, self._tls, guard=self.guard, max_bytes=s.inbound_max_bytes
        )

    def migrations(self) -> Path:
        """The shared dispatch tables (email_0001) and the gateway's own (email_0002…)."""
        return Path(__file__).parent / "migrations"

    def register(self, ctx: ServiceContext) -> None:
        """The engine's consumers plus the account-status endpoints."""
        self.engine.register(ctx.broker)

        @ctx.broker.subscriber(
            subjects.rpc("email_gateway", "account_status"),
            queue="email_gateway",
            decoder=raw_body,
            title="email account status",
            description="Request/reply: {site_id} → {ok, last_error, checked_at, …}.",
        )
        async def account_status(body: bytes) -> dict[str, Any]:
            try:
                request = request_object(body, SITE_REQUEST)
            except BadRequest as exc:
                return {"ok": False, "last_error": str(exc)}
            return await self.account_status(str(request.get("site_id", "")))

        @ctx.broker.subscriber(
            subjects.rpc("email_gateway", "account_test"),
            queue="email_gateway",
            decoder=raw_body,
            title="email account test",
            description="Request/reply: {site_id} → the email Test: sign in to SMTP and IMAP, "
            "open the inbox and Sent folder, send nothing; {ok, smtp, imap, last_error}.",
        )
        async def account_test(body: bytes) -> dict[str, Any]:
            try:
                request = request_object(body, SITE_REQUEST)
            except BadRequest as exc:
                return {"ok": False, "last_error": str(exc)}
            site = self.engine.sites.get(str(request.get("site_id", "")))
            if site is None or self.adapter is None:
                return {"ok": False, "last_error": "unknown site"}
            result = await self.adapter.test_account(site)
            return {**(await self.account_status(site.site_id)), **result}

    async def account_status(self, site_id: str) -> dict[str, Any]:
        """What the site's SMTP (and IMAP) account last did."""
        site = self.engine.sites.get(site_id)
        if site is None or self.adapter is None:
            return {
                "site_id": site_id,
                "ok": None,
                "last_error": "unknown site",
                "checked_at": None,
            }
        account = email_account_id(site.settings.email, site.group_id)
        answer: dict[str, Any] = {
            "site_id": site_id,
            "account": account,
            "ok": None,
            "last_error": None,
            "checked_at": None,
        }
        if account is None:
            answer["last_error"] = "email is disabled or has no SMTP server"
            return answer
        state = await self.adapter.health.get(account)
        if state is not None:
            answer.update(state)
        imap = None
        try:
            endpoint = imap_endpoint(site, self._box) if self._box is not None else None
        except Exception:
            endpoint = None
        if endpoint is not None:
            imap = await self.adapter.health.get(endpoint.account)
        answer["imap"] = imap
        return answer

    async def start(self, ctx: ServiceContext) -> None:
        """Bind the adapter to this replica's database and connections, then start."""
        self._ctx = ctx
        s = self.settings
        box = self._box = SecretBox.from_settings(ctx.settings)
        # The pool, the Sent-folder sessions and the receiver share this one guard.
        self.guard.allow = AllowList.parse(ctx.settings.outbound_allow)
        self.quarantine = Quarantine(s.quarantine_path(ctx.settings.var_dir))
        await asyncio.to_thread(self.quarantine.ensure)
        await self.pool.prepare()
        engine = self.engine
        suppression = OptOutFollower(ctx.nc, engine)

        def nudge() -> None:
            engine.relay.nudge()

        # The engine creates its queue and relay in start(); the adapter needs them, so the
        # adapter is built from parts that only read them when called.
        health = AccountHealth(ctx.db, nudge)
        # Issue 19: OAuth tokens, fetched through the same outbound guard as SMTP and IMAP;
        # rotated refresh tokens kept sealed in the database.
        rotated = RefreshTokenStore(ctx.db, box)
        self.oauth_tokens = TokenProvider(
            timeout=s.smtp_timeout_seconds,
            transport=lambda: guarded_transport(self.guard, verify=self._tls, trust_env=False),
            save_rotated=rotated.save,
            load_rotated=rotated.load,
        )
        receiver = Receiver(
            tokens=self.oauth_tokens,
            db=ctx.db,
            queue=_LateQueue(engine),  # type: ignore[arg-type]
            quarantine=self.quarantine,
            settings=s,
            box=box,
            tls=self._tls,
            nudge=nudge,
            guard=self.guard,
        )
        self.graph = GraphMail(
            timeout=s.smtp_timeout_seconds,
            transport=lambda: guarded_transport(self.guard, verify=self._tls, trust_env=False),
        )
        self.adapter = EmailAdapter(
            token_provider=self.oauth_tokens,
            graph=self.graph,
            settings=s,
            public_url=ctx.settings.public_url,
            box=box,
            tokens=UnsubscribeTokens.from_settings(ctx.settings),
            pool=self.pool,
            sent_sessions=self.sent_sessions,
            health=health,
            suppression=suppression,
            receiver=receiver,
        )
        engine.adapter = self.adapter
        self.tokens = TokenRegistry(ctx.nc)
        ctx.spawn(self.tokens.follow(), "tokens")
        await engine.start(ctx)
        ctx.spawn(suppression.follow(), "suppression")
        ctx.spawn(self._housekeeping(), "smtp-idle")

        async def suppression_loaded() -> bool:
            return suppression.ready.is_set()

        ctx.health.add_check("suppression", suppression_loaded)
        await asyncio.wait_for(suppression.ready.wait(), ctx.settings.startup_timeout_seconds)

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
        if self.adapter is not None:
            await self.adapter.graph.close()

    def http_app(self, ctx: ServiceContext) -> ASGIApp:
        """`GET /attachments/{attachment_id}`: a released attachment, for staff."""

        async def attachment(request: Request) -> Response:
            if self.tokens is None or self.quarantine is None:
                return JSONResponse({"detail": "starting"}, status_code=503)
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer "):
                return JSONResponse({"detail": "send 'Authorization: Bearer <token>'"}, 401)
            who = await self.tokens.authenticate(header[7:].strip())
            if who is None:
                return JSONResponse({"detail": "unknown or revoked token"}, status_code=401)
            t = tables.attachments
            async with ctx.db() as session:
                row = (
                    await session.execute(
                        sa.select(t).where(
                            t.c.attachment_id == request.path_params["attachment_id"]
                        )
                    )
                ).first()
            if row is None or not who.sees_site(row.group_id, row.site_id):
                return JSONResponse({"detail": "no such attachment you can see"}, 404)
            if row.released_at is None:
                return JSONResponse(
                    {"detail": "quarantined: release it first (an explicit, recorded action)"},
                    status_code=403,
                )
            if not row.stored or row.sha256 is None:
                return JSONResponse({"detail": "this attachment was not kept"}, status_code=410)
            quarantine = self.quarantine
            data = await asyncio.to_thread(quarantine.read, row.sha256)
            name = (row.filename or "attachment").replace('"', "'").replace("\r", " ")
            name = name.replace("\n", " ").encode("ascii", "replace").decode()
            return Response(
                data,
                media_type="application/octet-stream",
                headers={
                    "Content-Disposition": f'attachment; filename="{name}"',
                    "X-Content-Type-Options": "nosniff",
                    "Cache-Control": "no-store",
                    "X-Stagger-Sniffed-Type": row.sniffed_type,
                },
            )

        return Starlette(routes=[Route("/attachments/{attachment_id}", attachment)])


class _LateQueue:
    """The engine's queue, looked up when used (the engine creates it in its own start)."""

    def __init__(self, engine: DispatchEngine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine.queue, name)


def definition() -> EmailGatewayService:
    """The service as the runtime runs it."""
    return EmailGatewayService()
