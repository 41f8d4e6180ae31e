"""Who may do what with staff accounts, invitations' expiry, passwords and TOTP codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.config.staff import credentials, invitations
from services.config.staff.rules import (
    STAFF_ROLES,
    StaffMember,
    StaffRuleError,
    check_change,
    check_password,
    check_role,
    manages_staff,
    needs_totp,
    normalise_email,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ADMIN = StaffMember("a1", "g1", "group_admin")
OTHER_ADMIN = StaffMember("a2", "g1", "group_admin")
MANAGER = StaffMember("m1", "g1", "site_manager", frozenset({"s1"}))
AUDITOR = StaffMember("x1", "g1", "auditor")

members = st.builds(
    StaffMember,
    st.sampled_from(["u1", "u2"]),
    st.sampled_from(["g1", "g2"]),
    st.sampled_from(STAFF_ROLES),
    st.frozensets(st.sampled_from(["s1", "s2"])),
    st.sampled_from(["invited", "active", "disabled"]),
)


def test_only_an_active_group_admin_of_the_group_manages_staff() -> None:
    assert manages_staff(ADMIN, "g1")
    assert not manages_staff(ADMIN, "g2")
    assert not manages_staff(MANAGER, "g1")
    assert not manages_staff(AUDITOR, "g1")
    assert not manages_staff(StaffMember("a3", "g1", "group_admin", status="disabled"), "g1")


def test_site_managers_need_sites_of_the_group() -> None:
    assert check_role("site_manager", ["s1"], ["s1", "s2"]) == {"s1"}
    with pytest.raises(StaffRuleError) as none:
        check_role("site_manager", [], ["s1"])
    assert none.value.field == "sites"
    with pytest.raises(StaffRuleError) as foreign:
        check_role("site_manager", ["elsewhere"], ["s1"])
    assert "elsewhere" in foreign.value.message
    assert check_role("auditor", ["s1"], ["s1"]) == frozenset()
    with pytest.raises(StaffRuleError) as role:
        check_role("sender", [], [])
    assert role.value.field == "role"


def test_the_last_admin_cannot_be_demoted_or_disabled() -> None:
    with pytest.raises(StaffRuleError):
        check_change(ADMIN, ADMIN, new_role="auditor", active_admins=1)
    with pytest.raises(StaffRuleError):
        check_change(ADMIN, ADMIN, disabling=True, active_admins=1)
    check_change(ADMIN, OTHER_ADMIN, disabling=True, active_admins=2)
    check_change(ADMIN, MANAGER, disabling=True, active_admins=1)


# No deadline: a busy 2-core machine stalls examples for reasons of its own.
@settings(deadline=None)
@given(members, members, st.sampled_from([None, *STAFF_ROLES]), st.booleans(), st.integers(0, 3))
def test_changes_need_an_admin_of_the_same_group_and_keep_an_admin(
    actor: StaffMember, target: StaffMember, role: str | None, disabling: bool, admins: int
) -> None:
    try:
        check_change(actor, target, new_role=role, disabling=disabling, active_admins=admins)
    except StaffRuleError:
        return
    assert manages_staff(actor, target.group_id)
    removes_admin = (
        target.role == "group_admin"
        and target.active
        and (disabling or (role is not None and role != "group_admin"))
    )
    assert not removes_admin or admins >= 2


def test_emails_are_normalised_or_refused() -> None:
    assert normalise_email("  Ann@Example.ORG ") == "ann@example.org"
    for bad in ("", "ann", "ann@", "a b@example.org", "x" * 330 + "@e.org"):
        with pytest.raises(StaffRuleError):
            normalise_email(bad)


def test_passwords() -> None:
    check_password("correct horse battery", "ann@example.org")
    for bad in ("short", "x" * 300, "ann@example.org"):
        with pytest.raises(StaffRuleError) as refused:
            check_password(bad, "ann@example.org")
        assert refused.value.field == "password"


def test_group_admins_need_totp() -> None:
    assert needs_totp("group_admin")
    assert not needs_totp("site_manager") and not needs_totp("auditor")


# No deadline: a busy 2-core machine stalls examples for reasons of its own.
@settings(deadline=None)
@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=0, max_value=20_000))
def test_an_invitation_works_until_it_expires_and_only_once(hours: int, minutes: int) -> None:
    expires = invitations.expires_at(NOW, timedelta(hours=hours))
    at = NOW + timedelta(minutes=minutes)
    assert (invitations.usable(expires, None, at) is None) == (at < expires)
    assert invitations.usable(expires, NOW, NOW) is not None


def test_invitation_secrets_are_stored_hashed() -> None:
    secret = invitations.new_secret()
    assert len(secret) >= 43 and invitations.digest(secret) != secret
    assert invitations.digest(secret) == invitations.digest(secret)
    with pytest.raises(ValueError, match="positive"):
        invitations.expires_at(NOW, timedelta(0))


def test_passwords_hash_with_argon2id() -> None:
    stored = credentials.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert credentials.verify_password(stored, "correct horse battery")
    assert not credentials.verify_password(stored, "wrong horse battery")
    assert not credentials.verify_password(None, "anything")
    assert not credentials.verify_password("not a hash", "anything")


def test_a_totp_code_works_once_and_only_near_its_time() -> None:
    secret = credentials.new_totp_secret()
    code = credentials.totp_now(secret, NOW)
    step = credentials.totp_step(secret, code, NOW, None)
    assert step is not None
    assert credentials.totp_step(secret, code, NOW, step) is None  # replayed
    assert credentials.totp_step(secret, code, NOW + timedelta(seconds=31), None) is not None
    assert credentials.totp_step(secret, code, NOW + timedelta(minutes=5), None) is None
    assert credentials.totp_step(secret, "12345", NOW, None) is None
    assert credentials.totp_step(secret, "abcdef", NOW, None) is None
    uri = credentials.totp_uri(secret, "ann@example.org")
    assert uri.startswith("otpauth://totp/Stagger:ann%40example.org?secret=")
    assert credentials.totp_qr_data_uri(uri).startswith("data:image/svg+xml;base64,")
