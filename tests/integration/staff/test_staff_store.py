"""The staff adapter and use cases in-process, on SQLite and PostgreSQL (migration
config_0003) and the session's NATS: sessions, an identity provider's first sign-in, the
throttle's failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.staff.accounts import GroupFacts, StaffAccounts
from services.config.staff.mailer import StaffMailer
from services.config.staff.policy import StaffPolicy
from services.config.staff.sessions import StaffSessions
from services.config.staff.signin import Attempt, LocalSignIn, SignInRefused
from services.config.staff.store import StaffStore
from services.config.staff.throttle import Limit
from shared.db.engine import create_engine, session_factory
from shared.db.migrate import migrate, service_chain
from shared.net.outbound import OutboundGuard
from shared.secrets import SecretBox, generate_key
from shared.tokens import TokenRegistry

MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "config" / "migrations"
POLICY = StaffPolicy(
    session=timedelta(hours=1),
    invitation=timedelta(hours=1),
    account=Limit(2, timedelta(minutes=5)),
    client=Limit(3, timedelta(minutes=5)),
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    await migrate(engine, [service_chain("config", MIGRATIONS)])
    yield session_factory(engine)
    await engine.dispose()


class _Relay(StaffMailer):
    """Records invitations instead of sending (the SMTP path has its own tests)."""

    def __init__(self) -> None:
        super().__init__(SecretBox([generate_key().encode()]), OutboundGuard.parse(""), None, "")
        self.sent: list[str] = []

    async def send(self, invitation, group_email) -> str:  # type: ignore[no-untyped-def]
        self.sent.append(invitation.link)
        return "smtp_sink"


async def _facts(_: str) -> GroupFacts:
    return GroupFacts("Smile", ("s1", "s2"), None)


async def test_an_identity_providers_first_sign_in_activates_and_sessions_end(
    db: async_sessionmaker[AsyncSession], nc: Client
) -> None:
    box = SecretBox([generate_key().encode()])
    store = StaffStore(db)
    sessions = StaffSessions(nc, store, box, POLICY)
    relay = _Relay()
    accounts = StaffAccounts(
        nc, store, box, POLICY, sessions, relay, _facts, "https://stagger.example"
    )
    user = await accounts.invite("g1", "Ann@Example.org", "auditor", by=None, actor="cli")
    assert user.status == "invited" and user.email == "ann@example.org"
    assert relay.sent[0].startswith("https://stagger.example/console/invitation/")
    with pytest.raises(ValueError, match="invited"):
        await sessions.start("sid-0", user, method="oidc")

    active = await accounts.activate_external(user)
    assert active.status == "active"
    assert (await accounts.activate_external(active)).status == "active"  # idempotent
    secret = relay.sent[0].rsplit("/", 1)[1]
    with pytest.raises(ValueError, match="already been used"):
        await accounts.enrolment(secret)

    await sessions.start("sid-1", active, method="oidc", client="198.51.100.7")
    await sessions.start("sid-2", active, method="oidc")
    signed = await sessions.authenticate("sid-1")
    assert signed is not None and signed.principal.user_id == active.user_id
    assert signed.principal.actor == f"user:{active.user_id}"
    registry = TokenRegistry(nc)
    assert (await registry.check(signed.token)).user_id == active.user_id
    assert await sessions.authenticate("unknown") is None

    assert await sessions.end_all(active, reason="sign_out_everywhere", actor="test") == 2
    assert await sessions.authenticate("sid-1") is None
    assert await sessions.authenticate("sid-2") is None
    # Its token is revoked too (a fresh registry reads the token's whole history).
    assert await TokenRegistry(nc).authenticate(signed.token) is None


async def test_failures_throttle_per_account_and_client(
    db: async_sessionmaker[AsyncSession],
) -> None:
    box = SecretBox([generate_key().encode()])
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    clock = [now]
    signin = LocalSignIn(StaffStore(db), box, POLICY, clock=lambda: clock[0])
    wrong = Attempt("nobody@example.org", "wrong password!", "", "203.0.113.9")
    for _ in range(2):
        with pytest.raises(SignInRefused) as refused:
            await signin.check(wrong)
        assert refused.value.reason == "wrong"
    with pytest.raises(SignInRefused) as held:
        await signin.check(wrong)
    assert held.value.reason == "throttled" and held.value.wait == timedelta(minutes=5)
    # Another account from the same address: one more failure reaches the client limit (3).
    other = Attempt("else@example.org", "wrong password!", "", "203.0.113.9")
    with pytest.raises(SignInRefused) as third:
        await signin.check(other)
    assert third.value.reason == "wrong"
    with pytest.raises(SignInRefused) as by_client:
        await signin.check(other)
    assert by_client.value.reason == "throttled"
    clock[0] = now + timedelta(minutes=5, seconds=1)
    assert await signin.wait(wrong) is None
