"""Who may do what with staff accounts (pure: no I/O).

A staff user belongs to exactly one group and holds one role there: a group admin runs the
group (its sites, its staff, its API tokens), a site manager changes the listed sites only,
an auditor reads everything of the group and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

StaffRole = Literal["group_admin", "site_manager", "auditor"]
STAFF_ROLES: tuple[str, ...] = get_args(StaffRole)
Status = Literal["invited", "active", "disabled"]

MIN_PASSWORD = 12
# argon2 hashes whatever it is given; a cap keeps a megabyte "password" from costing a core.
MAX_PASSWORD = 256
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class StaffRuleError(ValueError):
    """A staff change that the rules refuse; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class StaffMember:
    """What the rules need to know about a user."""

    user_id: str
    group_id: str
    role: StaffRole
    sites: frozenset[str] = field(default_factory=frozenset)
    status: Status = "active"

    @property
    def active(self) -> bool:
        """May sign in and act."""
        return self.status == "active"


def normalise_email(raw: str) -> str:
    """Lower-cased, trimmed address; StaffRuleError('email') if it is not one."""
    email = raw.strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise StaffRuleError("email", "not a valid email address")
    return email


def check_role(role: str, sites: Iterable[str], group_sites: Iterable[str]) -> frozenset[str]:
    """The sites a role keeps: a site manager needs at least one of the group's sites; the
    other roles see every site and keep none."""
    if role not in STAFF_ROLES:
        raise StaffRuleError("role", f"must be one of {', '.join(STAFF_ROLES)}")
    chosen = frozenset(s for s in sites if s)
    if role != "site_manager":
        return frozenset()
    if not chosen:
        raise StaffRuleError("sites", "a site manager needs at least one site")
    unknown = sorted(chosen - frozenset(group_sites))
    if unknown:
        raise StaffRuleError("sites", f"not sites of this group: {', '.join(unknown)}")
    return chosen


def manages_staff(actor: StaffMember, group_id: str) -> bool:
    """May invite, change and disable the staff of `group_id` (and manage its API tokens)."""
    return actor.active and actor.role == "group_admin" and actor.group_id == group_id


def check_change(
    actor: StaffMember,
    target: StaffMember,
    *,
    new_role: str | None = None,
    disabling: bool = False,
    active_admins: int,
) -> None:
    """Refuse a role change or a disabling the rules forbid (StaffRuleError).

    A group never loses its last active group admin: nobody could then manage it.
    """
    if not manages_staff(actor, target.group_id):
        raise StaffRuleError("user", "only a group admin of this group may change its staff")
    losing_admin = target.role == "group_admin" and target.active
    demoting = new_role is not None and new_role != "group_admin"
    if losing_admin and (disabling or demoting) and active_admins <= 1:
        raise StaffRuleError("role", "the group's last active group admin cannot be removed")


def check_password(password: str, email: str) -> None:
    """Long enough, not absurdly long, not the address itself (StaffRuleError('password'))."""
    if len(password) < MIN_PASSWORD:
        raise StaffRuleError("password", f"use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise StaffRuleError("password", f"use at most {MAX_PASSWORD} characters")
    if password.strip().lower() == email.lower():
        raise StaffRuleError("password", "must not be your email address")


def needs_totp(role: str) -> bool:
    """Group admins must have a second factor before their first sign-in completes."""
    return role == "group_admin"
