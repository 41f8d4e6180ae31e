"""Composition root of the config service: wires stores, handlers, projections and routes."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp

from services.config.adapters.alert_mail import AlertMailer
from services.config.adapters.alerts import AlertProjection, AlertStore
from services.config.adapters.batches import BatchProjection, BatchStore
from services.config.adapters.read_model import SettingsProjection
from services.config.adapters.replies import ReplyProjection
from services.config.adapters.settings_store import SettingsStore
from services.config.config import AlertConfig
from services.config.console import Console
from services.config.entrypoints import problems
from services.config.entrypoints.api import ApiContext, build_router
from services.config.entrypoints.batches import batch_router
from services.config.entrypoints.optouts import optout_router
from services.config.entrypoints.preconditions import install_precondition_handler
from services.config.entrypoints.privacy import privacy_router
from services.config.entrypoints.replies import replies_router
from services.config.entrypoints.system import system_router
from services.config.entrypoints.unsubscribe import unsubscribe_router
from services.config.handlers import ConfigHandlers
from services.config.handlers.alert_batches import BatchLateWatcher
from services.config.handlers.alert_checks import AlertClock
from services.config.handlers.alert_dead_letters import DeadLetterQuiet
from services.config.handlers.alerts import AlertNotifier
from services.config.handlers.batch_commands import BatchCommands
from services.config.handlers.replies import ReplyDesk
from services.config.staff import api as staff_api
from services.config.staff.service import Staff
from shared.bus.topology import DEADLETTER, PROVIDERS, SETTINGS
from shared.config import SERVICE_NAMES
from shared.db.projection import ProjectionRunner
from shared.eventstore import EventStore
from shared.net.outbound import OutboundGuard, Resolver, system_resolver
from shared.privacy.erasure import reapply_erasures
from shared.privacy.retention import apply_retention
from shared.runtime.body_limit import BodyLimit
from shared.runtime.health import HealthBoard
from shared.runtime.service import BaseService, ServiceContext
from shared.secrets import SecretBox
from shared.tokens import TokenRegistry
from shared.unsubscribe import UnsubscribeTokens

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 60.0
RETENTION_SECONDS = 3600.0  # retention is counted in days: hourly is prompt enough


class ConfigService(BaseService):
    """Public HTTP API, console and system health."""

    name = "config"

    def __init__(
        self, resolver: Resolver = system_resolver, alerts: AlertConfig | None = None
    ) -> None:
        # How destination host names are resolved for the outbound allow-list (tests give
        # names addresses without DNS).
        self.resolver = resolver
        self.board: HealthBoard | None = None
        self.handlers: ConfigHandlers | None = None
        self.tokens: TokenRegistry | None = None
        self.projection: ProjectionRunner | None = None
        self.console: Console | None = None
        self.staff: Staff | None = None
        self.batches: BatchCommands | None = None
        self.alert_config = alerts or AlertConfig()
        self.alerts: AlertNotifier | None = None

    def migrations(self) -> Path:
        """The config read model's tables."""
        return Path(__file__).parent / "migrations"

    def http_app(self, ctx: ServiceContext) -> ASGIApp:
        """The public API (and, once built, the console)."""
        assert self.board and self.handlers and self.tokens
        app = FastAPI(
            title="Stagger",
            version="0.1.0",
            description="Paced, audited patient email and SMS for dental groups.",
        )
        problems.install(app)
        problems.document_problem_media_type(app)
        install_precondition_handler(app)
        app.include_router(system_router(self.board))
        assert self.batches
        app.include_router(
            build_router(ApiContext(self.handlers, self.tokens, ctx.nc, self.batches.store))
        )
        app.include_router(batch_router(self.handlers, self.tokens, self.batches))
        app.include_router(optout_router(self.handlers, self.tokens, ctx.nc))
        app.include_router(
            replies_router(self.handlers, self.tokens, ReplyDesk.of(ctx.nc, self.handlers))
        )
        app.include_router(privacy_router(self.handlers, self.tokens))
        app.include_router(
            unsubscribe_router(
                ctx.nc, UnsubscribeTokens.from_config(ctx.config), self.handlers.personal
            )
        )
        if self.staff is not None:
            app.include_router(staff_api.router(self.staff, self.tokens))
        if self.console is not None:
            self.console.mount(app)
        # Outermost, so no route, form parser or console page reads a body over the cap.
        app.add_middleware(BodyLimit, max_bytes=ctx.config.api_max_body_bytes)
        return app

    async def start(self, ctx: ServiceContext) -> None:
        """Heartbeats, tokens, the settings read model, and the group fan-out reconciler."""
        self.board = HealthBoard(SERVICE_NAMES, ctx.config.heartbeat_seconds)
        await self.board.subscribe(ctx.nc)
        box = SecretBox.from_config(ctx.config)
        guard = OutboundGuard.parse(ctx.config.outbound_allow, self.resolver)
        self.handlers = ConfigHandlers(
            ctx.nc,
            SettingsStore(EventStore(ctx.nc, SETTINGS)),
            box,
            ctx.db,
            simulator_enabled=ctx.config.sms_simulator_enabled,
            guard=guard,
        )
        await self.handlers.personal.ready()  # the tag key, before any request computes a tag
        self.tokens = TokenRegistry(ctx.nc)
        ctx.spawn(self.tokens.follow(), "tokens")
        self.projection = ProjectionRunner(ctx.nc, ctx.db, SettingsProjection())
        ctx.spawn(self.projection.run(), "settings-projection")
        ctx.spawn(self._reconcile_forever(), "group-reconciler")
        ctx.spawn(self._retention_forever(), "privacy-retention")
        assert ctx.db is not None, "the config service needs its database"
        staff = self.staff = Staff(ctx.config, ctx.nc, ctx.db, box, self.handlers, guard)
        staff.watch_tokens(self.tokens)
        ctx.spawn(staff.flush_usage_forever(), "token-usage")
        self.batches = BatchCommands(ctx.nc, BatchStore(ctx.db))
        batch_projection = ProjectionRunner(ctx.nc, ctx.db, BatchProjection())
        ctx.spawn(batch_projection.run(), "batch-projection")
        self.alerts = self._start_alerts(ctx, box, guard)
        reply_projection = ProjectionRunner(ctx.nc, ctx.db, ReplyProjection())
        ctx.spawn(reply_projection.run(), "reply-projection")
        self.console = Console(ctx.config, ctx.nc, self.handlers, self.tokens, staff)
        ctx.spawn(self.console.follow(), "console-optouts")
        projection = self.projection

        async def caught_up() -> bool:
            return projection.caught_up.is_set()

        ctx.health.add_check("settings_projection", caught_up)

    def _start_alerts(
        self, ctx: ServiceContext, box: SecretBox, guard: OutboundGuard
    ) -> AlertNotifier:
        """The alert projections (PROVIDERS, DEADLETTER) and the notifier that publishes
        and emails what they decide."""
        assert ctx.db is not None and self.handlers is not None
        projections = [AlertProjection(PROVIDERS), AlertProjection(DEADLETTER)]
        for projection in projections:
            runner = ProjectionRunner(ctx.nc, ctx.db, projection, lenient=True)
            ctx.spawn(runner.run(), projection.name)
        alerts, store = AlertStore(ctx.db), self.handlers.store
        assert self.batches is not None
        late = asyncio.Event()
        quiet = timedelta(hours=self.alert_config.dead_letter_quiet_hours)
        checks = [
            BatchLateWatcher(alerts, self.batches, store).check,
            DeadLetterQuiet(alerts, quiet).check,
        ]
        ctx.spawn(AlertClock(checks, late).run(), "alert-checks")
        notifier = AlertNotifier(
            ctx.nc,
            alerts,
            AlertMailer(self.alert_config, box, guard),
            store.group,
            f"{ctx.config.public_url.rstrip('/')}/console/dashboard",
            [*(p.changed for p in projections), late],
            self.alert_config.retry_seconds,
        )
        ctx.spawn(notifier.run(), "alert-notifier")
        return notifier

    async def _reconcile_forever(self) -> None:
        assert self.handlers and self.projection
        await self.projection.caught_up.wait()
        while True:
            try:
                fixed = await self.handlers.reconcile()
                if fixed:
                    log.info("brought sites in line with their group", extra={"sites": fixed})
            except Exception:
                log.exception("group reconciliation failed; retrying later")
            await asyncio.sleep(RECONCILE_SECONDS)

    async def _retention_forever(self) -> None:
        # Every replica may run it: deleting a key twice finds it gone the second time.
        assert self.handlers
        while True:
            try:
                deleted = await apply_retention(
                    self.handlers.nc, self.handlers.personal, datetime.now(UTC)
                )
                if any(deleted.values()):
                    log.info("personal data past its retention deleted", extra=deleted)
                # Erased keys back from a restored backup are deleted again.
                if again := await reapply_erasures(self.handlers.nc, self.handlers.personal):
                    log.warning("keys of erased recipients deleted again", extra={"keys": again})
            except Exception:
                log.exception("applying retention failed; retrying later")
            await asyncio.sleep(RETENTION_SECONDS)


def definition() -> ConfigService:
    """The service as the runtime runs it."""
    return ConfigService()
