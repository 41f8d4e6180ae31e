"""The config service's use cases: load an aggregate, decide, seal secrets, append.

Entry points (HTTP routes, CLI) call these; they never touch NATS or SQL directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.adapters import read_model
from services.config.adapters.settings_store import SettingsStore
from services.config.domain import aggregates
from services.config.domain.aggregates import GroupState, SiteState
from services.config.domain.outcomes import (
    AccountInUse,
    Channel,
    GatewayUnavailable,
    NotFound,
    Outcome,
    VersionMismatch,
    destinations,
)
from services.config.handlers import reseal
from shared.bus import subjects
from shared.bus.topology import CONTROL
from shared.domain.site_settings import (
    SECRET_PATHS,
    SettingsError,
    SiteSettings,
    SmsProvider,
    Window,
    effective,
    split_patch,
)
from shared.events.envelope import make_event
from shared.events.schemas.control import SendNowRequested
from shared.eventstore import ConcurrencyConflict, EventStore
from shared.net.outbound import OutboundGuard
from shared.privacy.codec import PersonalData
from shared.secrets import REDACTED, SecretBox

log = logging.getLogger(__name__)


class ConfigHandlers:
    """Settings commands and queries."""

    def __init__(
        self,
        nc: Client,
        store: SettingsStore,
        box: SecretBox,
        db: async_sessionmaker[AsyncSession] | None,
        *,
        simulator_enabled: bool = False,
        guard: OutboundGuard | None = None,
    ) -> None:
        self.nc = nc
        self.store = store
        self.box = box
        # Personal fields of messages are sealed with it before they reach the outbox.
        self.personal = PersonalData(nc, box)
        self._db = db
        self.simulator_enabled = simulator_enabled
        # None: no write-time check (in-process operator tools); the API always has one, and
        # the gateways judge every connection whatever was written.
        self.guard = guard

    @property
    def db(self) -> async_sessionmaker[AsyncSession]:
        """The read model's sessions (not available to the CLI)."""
        if self._db is None:
            raise RuntimeError("this use case needs the config read model")
        return self._db

    # --- secrets -----------------------------------------------------------------------

    def seal_patch(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Seal plaintext secrets in a flat patch; a re-sent mask means "unchanged".

        Also where a write choosing the simulator is refused when the deployment does not
        offer it (every settings write passes here before anything is decided)."""
        refused = {
            path: "the SMS provider simulator is not enabled on this deployment "
            "(STAGGER_SMS_SIMULATOR_ENABLED)"
            for path in ("sms.provider.kind", "sms.secondary_provider.kind")
            if patch.get(path) == "simulator" and not self.simulator_enabled
        }
        if refused:
            raise SettingsError(refused)
        sealed: dict[str, Any] = {}
        for path, value in patch.items():
            if path in SECRET_PATHS:
                if value == REDACTED:
                    continue
                if value is not None:
                    if not isinstance(value, str) or not value:
                        raise SettingsError({path: "must be a non-empty string or null"})
                    value = self.box.seal(value)
            sealed[path] = value
        return sealed

    async def check_destinations(self, before: SiteSettings | None, after: SiteSettings) -> None:
        """Refuse (SettingsError naming the field) a new provider URL or SMTP/IMAP host that
        resolves to an address the operator does not allow."""
        if self.guard is None:
            return
        old = destinations(before) if before is not None else {}
        errors: dict[str, str] = {}
        for path, (host, port) in destinations(after).items():
            if old.get(path, (None,))[0] == host:
                continue  # unchanged: judged when it was written, and at every connection
            reason = await self.guard.refusal(host, port)
            if reason is not None:
                errors[path] = f"{host} {reason}"
        if errors:
            raise SettingsError(errors)

    # --- groups ------------------------------------------------------------------------

    async def group(self, group_id: str) -> GroupState:
        """A group or NotFound."""
        group = await self.store.group(group_id)
        if group is None:
            raise NotFound(f"group {group_id}")
        return group

    async def create_group(
        self, group_id: str, name: str, defaults: Mapping[str, Any], *, actor: str
    ) -> GroupState:
        """Create a group (operators, from the CLI)."""
        subjects.check_token(group_id, "group id")
        if await self.store.group(group_id) is not None:
            raise SettingsError({"group_id": f"group {group_id} already exists"})
        data = aggregates.decide_create_group(
            group_id, name, self.seal_patch(split_patch(defaults))
        )
        await self.check_destinations(None, data.defaults)
        await self.store.append_group(group_id, data, 0, actor=actor)
        return await self.group(group_id)

    async def change_group_defaults(
        self,
        group_id: str,
        expected_version: int,
        patch: Mapping[str, Any],
        *,
        actor: str,
        correlation_id: str | None = None,
    ) -> tuple[Outcome, list[str]]:
        """Change defaults, then bring every inheriting site along. Returns sites updated."""
        group = await self.group(group_id)
        if group.version != expected_version:
            raise VersionMismatch(expected_version, group.version)
        flat = self.seal_patch(split_patch(patch))
        data = aggregates.decide_group_defaults(group, flat)
        if data is None:
            return Outcome(group.version, False, [], []), []
        # Every inheriting site must still be valid with the new defaults.
        site_ids = await self._site_ids(group_id)
        candidate = aggregates.GroupState(
            group_id,
            group.name,
            data.defaults,
            group.version,
        )
        await self.check_destinations(group.defaults, candidate.defaults)
        for site_id in site_ids:
            site = await self.store.site(site_id)
            if site is not None:
                try:
                    after = effective(candidate.defaults, site.overrides)
                except SettingsError as exc:
                    raise SettingsError(
                        {f"{path} (site {site_id})": msg for path, msg in exc.errors.items()}
                    ) from None
                await self._own_accounts(group_id, site.settings, after)
        version = await self.store.append_group(
            group_id, data, expected_version, actor=actor, correlation_id=correlation_id
        )
        updated = await self.follow_group(group_id, actor=actor)
        changes = [c.model_dump() for c in data.changes]
        return Outcome(version, True, changes, []), updated

    async def follow_group(
        self, group_id: str, *, actor: str, site_ids: list[str] | None = None
    ) -> list[str]:
        """Append follow-up events to sites whose effective settings the group changed."""
        group = await self.group(group_id)
        updated = []
        if site_ids is None:
            site_ids = await self._site_ids(group_id)
        for site_id in site_ids:
            for _attempt in range(5):
                site = await self.store.site(site_id)
                if site is None:
                    break
                data = aggregates.decide_follow_group(site, group)
                if data is None:
                    break
                # The id depends only on the site and the group version, so replicas or a
                # retry after a crash store the follow-up once.
                event_id = hashlib.sha256(f"follow:{site_id}:{group.version}".encode()).hexdigest()[
                    :32
                ]
                try:
                    await self.store.append_site(
                        group_id, site_id, data, site.version, actor=actor, event_id=event_id
                    )
                    updated.append(site_id)
                    break
                except ConcurrencyConflict:
                    continue
        return updated

    async def reconcile(self, *, actor: str = "service:config") -> int:
        """Bring every site in line with its group (after a crash mid fan-out)."""
        async with self.db() as session:
            group_rows = await read_model.all_groups(session)
        total = 0
        for row in group_rows:
            total += len(await self.follow_group(row["group_id"], actor=actor))
        return total

    async def _own_accounts(
        self, group_id: str, before: SiteSettings | None, after: SiteSettings
    ) -> None:
        """Both SMS accounts of a site (primary and the failover's secondary) must be the
        group's own. The read model holds primary accounts only: a secondary is checked
        against other groups' primaries."""
        for field, path in (
            ("provider", "sms.provider"),
            ("secondary_provider", "sms.secondary_provider"),
        ):
            old = getattr(before.sms, field) if before is not None else None
            await self._own_account(group_id, old, getattr(after.sms, field), path)

    async def _own_account(
        self,
        group_id: str,
        before: SmsProvider | None,
        after: SmsProvider,
        path: str = "sms.provider",
    ) -> None:
        """Refuse to point a site at an SMS provider account another group's site uses.

        Replies and receipts are attributed to a group by the provider account they come
        through, so two groups must never share one. Only a change of account is checked: a
        site's unrelated edits are never blocked by an account it already had. The check reads
        the read model, so two groups claiming the same new account within its lag can both
        pass; the SMS gateway then treats the account as ambiguous (its replies wait for an
        operator, no opt-out is guessed). The CLI has no read model and creates only groups.
        """
        if after.kind == "none" or not after.account_id or self._db is None:
            return
        if before is not None and (before.kind, before.account_id) == (
            after.kind,
            after.account_id,
        ):
            return
        async with self.db() as session:
            if await read_model.account_used_elsewhere(
                session, after.kind, after.account_id, group_id
            ):
                raise AccountInUse(f"{path}.account_id")

    async def _site_ids(self, group_id: str) -> list[str]:
        async with self.db() as session:
            return await read_model.sites_of_group(session, group_id)

    # --- sites -------------------------------------------------------------------------

    async def site(self, site_id: str) -> SiteState:
        """A site or NotFound."""
        site = await self.store.site(site_id)
        if site is None:
            raise NotFound(f"site {site_id}")
        return site

    async def create_site(
        self,
        group_id: str,
        site_id: str,
        profile: Mapping[str, Any],
        settings_patch: Mapping[str, Any],
        *,
        actor: str,
        correlation_id: str | None = None,
    ) -> SiteState:
        """Create a site in a group."""
        subjects.check_token(site_id, "site id")
        group = await self.group(group_id)
        if await self.store.site(site_id) is not None:
            raise SettingsError({"site_id": f"site {site_id} already exists"})
        overrides = self.seal_patch(split_patch(settings_patch))
        for key, value in profile.items():
            overrides[f"profile.{key}"] = value
        data = aggregates.decide_create_site(group, site_id, overrides)
        after = data.settings
        await self._own_accounts(group_id, None, after)
        await self.check_destinations(None, after)
        await self.store.append_site(
            group_id, site_id, data, 0, actor=actor, correlation_id=correlation_id
        )
        return await self.site(site_id)

    async def change_site(
        self,
        site_id: str,
        expected_version: int,
        patch: Mapping[str, Any],
        inherit: list[str],
        *,
        actor: str,
        note: str | None = None,
        correlation_id: str | None = None,
        flat: bool = False,
        system_patch: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Override and/or inherit settings of one site, with optimistic concurrency."""
        site = await self.site(site_id)
        if site.version != expected_version:
            raise VersionMismatch(expected_version, site.version)
        group = await self.group(site.group_id)
        sealed = self.seal_patch(patch if flat else split_patch(patch))
        data = aggregates.decide_site_change(
            site, group, sealed, inherit, note=note, system_patch=system_patch
        )
        if data is None:
            return Outcome(site.version, False, [], [])
        after = data.settings
        await self._own_accounts(site.group_id, site.settings, after)
        await self.check_destinations(site.settings, after)
        version = await self.store.append_site(
            site.group_id,
            site_id,
            data,
            expected_version,
            actor=actor,
            correlation_id=correlation_id,
        )
        return Outcome(
            version,
            True,
            [c.model_dump() for c in data.changes],
            [w.model_dump() for w in data.warnings],
        )

    async def change_windows(
        self,
        site_id: str,
        expected_version: int,
        path: str,
        *,
        actor: str,
        add: Window | None = None,
        remove: str | None = None,
        replace: list[Window] | None = None,
    ) -> Outcome:
        """Add, delete or replace one session/blackout (sessions are never edited in place)."""
        site = await self.site(site_id)
        if site.version != expected_version:
            raise VersionMismatch(expected_version, site.version)
        patch = aggregates.windows_patch(site, path, add=add, remove=remove, replace=replace)
        return await self.change_site(site_id, expected_version, patch, [], actor=actor, flat=True)

    async def set_provider_lock(
        self, site_id: str, locked: bool, *, actor: str, note: str
    ) -> Outcome:
        """Lock (after a successful test) or unlock the SMS provider's account id."""
        for _attempt in range(5):
            site = await self.site(site_id)
            if site.settings.sms.provider.locked == locked:
                return Outcome(site.version, False, [], [])
            try:
                return await self.change_site(
                    site_id,
                    site.version,
                    {},
                    [],
                    actor=actor,
                    note=note,
                    flat=True,
                    system_patch={"sms.provider.locked": locked},
                )
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(f"site {site_id}", 0, None)

    # --- key rotation ------------------------------------------------------------------

    async def reseal_check(self) -> list[str]:
        """Every aggregate holding a secret not under the first key (nothing written); see
        `handlers.reseal`."""
        return await reseal.stale_aggregates(self)

    async def reseal(self, *, actor: str) -> list[str]:
        """Re-seal every secret under the first key (key rotation); see `handlers.reseal`."""
        return await reseal.reseal(self, actor=actor)

    # --- commands to other services ------------------------------------------------------

    async def provider_test(self, site: SiteState, *, actor: str) -> dict[str, Any]:
        """Ask an SMS gateway to check the site's saved provider settings and report the
        credits left; a success locks the account id (as the seed's Practice ID)."""
        if site.settings.sms.provider.kind == "none":
            raise SettingsError({"sms.provider.kind": "no SMS provider is selected"})
        try:
            reply = await self.nc.request(
                subjects.rpc("sms_gateway", "provider_test"),
                json.dumps(
                    {"site_id": site.site_id, "group_id": site.group_id, "actor": actor}
                ).encode(),
                timeout=15,
            )
        except (NoRespondersError, NatsTimeout) as exc:
            raise GatewayUnavailable("no SMS gateway answered the test") from exc
        result: dict[str, Any] = json.loads(reply.data)
        if result.get("ok"):
            await self.set_provider_lock(
                site.site_id, True, actor=actor, note="provider test succeeded"
            )
        return result

    async def send_now(
        self, site: SiteState, channel: Channel, *, actor: str, reason: str = ""
    ) -> str:
        """Record a send-now request; the scheduler turns it into one manual tick."""
        data = SendNowRequested(
            group_id=site.group_id, site_id=site.site_id, channel=channel, reason=reason
        )
        event = make_event(
            data,
            source="config",
            actor=actor,
            subject=site.site_id,
            group_id=site.group_id,
            site_id=site.site_id,
        )
        await EventStore(self.nc, CONTROL).append(subjects.control("send_now", site.site_id), event)
        return event.id
