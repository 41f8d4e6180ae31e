"""Composition root of the audit service."""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp

from services.audit.adapters.message_status import MessageStatusProjection
from services.audit.adapters.trail import AuditProjection
from services.audit.entrypoints.api import AuditContext, build_app
from shared.db.projection import ProjectionRunner
from shared.runtime.service import BaseService, ServiceContext
from shared.sites import SiteDirectory
from shared.tokens import TokenRegistry


class AuditService(BaseService):
    """Keeps the tamper-evident trail of every event and answers questions about it."""

    name = "audit"

    def __init__(self) -> None:
        self.runner: ProjectionRunner | None = None
        self.tokens: TokenRegistry | None = None
        self.sites: SiteDirectory | None = None

    def migrations(self) -> Path:
        """The trail's tables."""
        return Path(__file__).parent / "migrations"

    def http_app(self, ctx: ServiceContext) -> ASGIApp:
        """Queries, exports, verification."""
        assert self.tokens is not None
        assert self.sites is not None
        return build_app(AuditContext(ctx.db, self.tokens, self.sites))

    async def start(self, ctx: ServiceContext) -> None:
        """Follow the AUDIT stream into the trail."""
        self.tokens = TokenRegistry(ctx.nc)
        self.sites = SiteDirectory(ctx.nc)
        ctx.spawn(self.tokens.follow(), "tokens")
        ctx.spawn(self.sites.follow(), "sites")
        self.runner = ProjectionRunner(ctx.nc, ctx.db, AuditProjection(), batch_size=1000)
        status = ProjectionRunner(ctx.nc, ctx.db, MessageStatusProjection(), batch_size=1000)
        ctx.spawn(self.runner.run(), "audit-trail")
        ctx.spawn(status.run(), "message-status")
        runner = self.runner

        async def caught_up() -> bool:
            return runner.caught_up.is_set() and status.caught_up.is_set()

        ctx.health.add_check("trail", caught_up)


def definition() -> AuditService:
    """The service as the runtime runs it."""
    return AuditService()
