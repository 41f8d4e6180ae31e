"""Staff account use cases: invite, accept an invitation, change a role, disable."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client

from services.config.staff import credentials, invitations
from services.config.staff.events import record
from services.config.staff.mailer import Invitation, StaffMailer
from services.config.staff.policy import StaffPolicy
from services.config.staff.rules import (
    StaffMember,
    StaffRuleError,
    check_change,
    check_password,
    check_role,
    manages_staff,
    needs_totp,
    normalise_email,
)
from services.config.staff.sessions import StaffSessions
from services.config.staff.store import StaffStore, UserRow
from shared.domain.site_settings import EmailSettings
from shared.events.schemas.staff import (
    StaffActivated,
    StaffDisabled,
    StaffInvited,
    StaffRoleChanged,
)
from shared.secrets import SecretBox

INVITE_PATH = "/console/invitation/"


@dataclass(frozen=True)
class GroupFacts:
    """What inviting needs to know of a group."""

    name: str
    site_ids: tuple[str, ...]
    email: EmailSettings | None


GroupLookup = Callable[[str], Awaitable[GroupFacts]]


@dataclass(frozen=True)
class Enrolment:
    """An invitation being accepted: its user and the TOTP secret offered to them."""

    user: UserRow
    totp_secret: str

    @property
    def required(self) -> bool:
        """The second factor is compulsory for this user's role."""
        return needs_totp(self.user.role)


class StaffAccounts:
    """Invitations and changes to staff accounts, each recorded in the trail."""

    def __init__(
        self,
        nc: Client,
        store: StaffStore,
        box: SecretBox,
        policy: StaffPolicy,
        sessions: StaffSessions,
        mailer: StaffMailer,
        groups: GroupLookup,
        public_url: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.nc = nc
        self.store = store
        self.box = box
        self.policy = policy
        self.sessions = sessions
        self.mailer = mailer
        self.groups = groups
        self.public_url = public_url.rstrip("/")
        self.clock = clock

    async def invite(
        self,
        group_id: str,
        email: str,
        role: str,
        sites: Iterable[str] = (),
        *,
        by: StaffMember | None,
        actor: str,
        name: str = "",
    ) -> UserRow:
        """Create an invited user and email them a one-time link.

        `by` is the group admin inviting (None: the operator at the server). Nothing is
        stored if the email could not be sent (MailNotSent) or a rule refuses
        (StaffRuleError naming the field).
        """
        if by is not None and not manages_staff(by, group_id):
            raise StaffRuleError("group", "only a group admin of this group may invite staff")
        address = normalise_email(email)
        group = await self.groups(group_id)
        kept = check_role(role, sites, group.site_ids)
        if await self.store.user_by_email(address) is not None:
            raise StaffRuleError("email", "a user with this address already exists")
        now = self.clock()
        secret = invitations.new_secret()
        expires = invitations.expires_at(now, self.policy.invitation)
        link = f"{self.public_url}{INVITE_PATH}{secret}"
        hours = self.policy.invitation.total_seconds() / 3600
        sent_via = await self.mailer.send(
            Invitation(address, group.name, role, link, hours), group.email
        )
        user_id = secrets.token_hex(8)
        await self.store.add_user(
            {
                "user_id": user_id,
                "group_id": group_id,
                "email": address,
                "name": name.strip()[:200],
                "role": role,
                "sites": sorted(kept),
                "status": "invited",
                "created_at": now,
                "updated_at": now,
            },
            {
                "token_hash": invitations.digest(secret),
                "user_id": user_id,
                "expires_at": expires,
                "created_at": now,
            },
        )
        await record(
            self.nc,
            StaffInvited(
                user_id=user_id,
                group_id=group_id,
                email=address,
                role=role,  # type: ignore[arg-type]
                sites=sorted(kept),
                expires_at=expires,
                sent_via=sent_via,  # type: ignore[arg-type]
            ),
            actor=actor,
            user_id=user_id,
            group_id=group_id,
        )
        user = await self.store.user(user_id)
        assert user is not None
        return user

    async def enrolment(self, secret: str) -> Enrolment:
        """The invitation behind a link, with the TOTP secret to show (StaffRuleError('link')
        if it is unknown, used or expired)."""
        found = await self.store.invitation(invitations.digest(secret))
        if found is None:
            raise StaffRuleError("link", "This invitation link is not valid.")
        expires, used_at, user_id = found
        why = invitations.usable(expires, used_at, self.clock())
        user = await self.store.user(user_id)
        if why is None and (user is None or user.status != "invited"):
            why = "This invitation is no longer valid."
        if why is not None or user is None:
            raise StaffRuleError("link", why or "This invitation is no longer valid.")
        if user.totp_pending is None:
            pending = credentials.new_totp_secret()
            await self.store.update_user(user.user_id, totp_pending=self.box.seal(pending))
            return Enrolment(user, pending)
        return Enrolment(user, self.box.open(user.totp_pending))

    async def accept(self, secret: str, password: str, repeat: str, code: str) -> UserRow:
        """Set the password (and TOTP) and activate the user; the link is used up."""
        enrolment = await self.enrolment(secret)
        user = enrolment.user
        check_password(password, user.email)
        if password != repeat:
            raise StaffRuleError("repeat", "the two passwords differ")
        step: int | None = None
        if code.strip() or enrolment.required:
            step = credentials.totp_step(enrolment.totp_secret, code, self.clock(), None)
            if step is None:
                raise StaffRuleError("code", "that code is not the one your app shows now")
        accepted = await self.store.accept(
            invitations.digest(secret),
            user.user_id,
            self.clock(),
            status="active",
            password_hash=credentials.hash_password(password),
            totp_secret=self.box.seal(enrolment.totp_secret) if step is not None else None,
            totp_pending=None,
            totp_last_step=step,
        )
        if not accepted:
            raise StaffRuleError("link", "This invitation has already been used.")
        await record(
            self.nc,
            StaffActivated(user_id=user.user_id, group_id=user.group_id, totp=step is not None),
            actor=f"user:{user.user_id}",
            user_id=user.user_id,
            group_id=user.group_id,
        )
        done = await self.store.user(user.user_id)
        assert done is not None
        return done

    async def activate_external(self, user: UserRow) -> UserRow:
        """An invited user's first sign-in through the group's identity provider: active from
        now on, the invitation used up (their password stays unset)."""
        if await self.store.activate(user.user_id, self.clock()):
            await record(
                self.nc,
                StaffActivated(user_id=user.user_id, group_id=user.group_id, totp=False),
                actor=f"user:{user.user_id}",
                user_id=user.user_id,
                group_id=user.group_id,
            )
        fresh = await self.store.user(user.user_id)
        assert fresh is not None
        return fresh

    async def _target(self, by: StaffMember, user_id: str) -> UserRow:
        target = await self.store.user(user_id)
        if target is None or target.group_id != by.group_id:
            raise StaffRuleError("user", "no such user in this group")
        return target

    async def change_role(
        self, by: StaffMember, user_id: str, role: str, sites: Iterable[str], *, actor: str
    ) -> UserRow:
        """Give a user another role (or other sites); their sessions end so it applies now."""
        target = await self._target(by, user_id)
        group = await self.groups(target.group_id)
        kept = check_role(role, sites, group.site_ids)
        check_change(
            by,
            target.member,
            new_role=role,
            active_admins=await self.store.active_admins(target.group_id),
        )
        await self.store.update_user(user_id, role=role, sites=sorted(kept))
        await record(
            self.nc,
            StaffRoleChanged(
                user_id=user_id,
                group_id=target.group_id,
                role=role,  # type: ignore[arg-type]
                sites=sorted(kept),
                old_role=target.role,  # type: ignore[arg-type]
                old_sites=list(target.sites),
            ),
            actor=actor,
            user_id=user_id,
            group_id=target.group_id,
        )
        await self.sessions.end_all(target, reason="role_changed", actor=actor)
        changed = await self.store.user(user_id)
        assert changed is not None
        return changed

    async def disable(
        self, by: StaffMember, user_id: str, *, actor: str, reason: str = ""
    ) -> UserRow:
        """Disable a user: they cannot sign in, and every session of theirs ends at once."""
        target = await self._target(by, user_id)
        check_change(
            by,
            target.member,
            disabling=True,
            active_admins=await self.store.active_admins(target.group_id),
        )
        await self.store.update_user(user_id, status="disabled")
        await record(
            self.nc,
            StaffDisabled(user_id=user_id, group_id=target.group_id, reason=reason[:200]),
            actor=actor,
            user_id=user_id,
            group_id=target.group_id,
        )
        await self.sessions.end_all(target, reason="disabled", actor=actor)
        disabled = await self.store.user(user_id)
        assert disabled is not None
        return disabled
