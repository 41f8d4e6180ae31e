"""API tokens for machines, managed by a group admin in the console: create (with an expiry),
list (with when each was last used), revoke. Console-session tokens are not listed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client

from services.config.staff.rules import StaffMember, StaffRuleError, manages_staff
from services.config.staff.store import StaffStore
from shared.tokens import TokenRegistry, expiry, issue_token, revoke_token

TOKEN_ROLES = ("sender", "auditor", "site_manager", "group_admin")


def check_token_request(
    role: str, sites: Iterable[str], group_sites: Iterable[str], expires_in: str, label: str
) -> tuple[frozenset[str], datetime]:
    """The sites and expiry of a token to create (StaffRuleError naming the field)."""
    if role not in TOKEN_ROLES:
        raise StaffRuleError("role", f"must be one of {', '.join(TOKEN_ROLES)}")
    if not label.strip():
        raise StaffRuleError("label", "say what the token is for")
    chosen = frozenset(s for s in sites if s)
    unknown = sorted(chosen - frozenset(group_sites))
    if unknown:
        raise StaffRuleError("sites", f"not sites of this group: {', '.join(unknown)}")
    if role == "site_manager" and not chosen:
        raise StaffRuleError("sites", "a site manager token needs at least one site")
    if role in ("group_admin", "auditor"):
        chosen = frozenset()
    try:
        until = expiry(expires_in=expires_in, expires_at=None)
    except ValueError as exc:
        raise StaffRuleError("expires_in", str(exc).removeprefix("--expires-in: ")) from None
    if until is None:
        raise StaffRuleError("expires_in", "a token made in the console needs an expiry")
    return chosen, until


class MachineTokens:
    """The group's API tokens."""

    def __init__(
        self,
        nc: Client,
        registry: TokenRegistry,
        store: StaffStore,
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.nc = nc
        self.registry = registry
        self.store = store
        # Writes this replica's pending "last used" notes first, so its own list is current.
        self.flush = flush

    async def listing(self, group_id: str) -> list[dict[str, Any]]:
        """The group's machine tokens, newest expiry first, with last use."""
        if self.flush is not None:
            await self.flush()
        now = datetime.now(UTC)
        rows = [t for t in self.registry.listing(group_id) if not t.get("user_id")]
        used = await self.store.last_used(str(t["token_id"]) for t in rows)
        for row in rows:
            row["last_used"] = used.get(str(row["token_id"]))
            at = row.get("expires_at")
            row["expired"] = isinstance(at, datetime) and at <= now
        return sorted(rows, key=lambda r: (bool(r["revoked"]), str(r["label"])))

    async def create(
        self,
        by: StaffMember,
        *,
        role: str,
        sites: Iterable[str],
        group_sites: Iterable[str],
        expires_in: str,
        label: str,
        actor: str,
    ) -> str:
        """Issue a token; returns it in full (shown once)."""
        if not manages_staff(by, by.group_id):
            raise StaffRuleError("role", "only a group admin may create API tokens")
        kept, until = check_token_request(role, sites, group_sites, expires_in, label)
        _, token = await issue_token(
            self.nc,
            group_id=by.group_id,
            role=role,  # type: ignore[arg-type]
            sites=kept,
            label=label.strip()[:100],
            actor=actor,
            expires_at=until,
        )
        return token

    async def revoke(self, by: StaffMember, token_id: str, *, actor: str) -> None:
        """Revoke one of the group's machine tokens (StaffRuleError if it is not one)."""
        if not manages_staff(by, by.group_id):
            raise StaffRuleError("role", "only a group admin may revoke API tokens")
        mine = {
            str(t["token_id"]) for t in self.registry.listing(by.group_id) if not t.get("user_id")
        }
        if token_id not in mine:
            raise StaffRuleError("token", "no such API token in this group")
        await revoke_token(self.nc, token_id, reason="revoked in the console", actor=actor)
