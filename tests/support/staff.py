"""Staff users for tests: seeded straight into the config service's database (the invitation
flow has its own tests), and signing them in over HTTP as a browser would."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from services.config.staff import credentials
from services.config.staff.store import StaffStore
from shared.config import StaggerConfig
from shared.db.engine import create_engine, session_factory
from shared.secrets import SecretBox

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class StaffLogin:
    """A seeded user's credentials; `code()` gives a TOTP code not used before."""

    user_id: str
    group_id: str
    email: str
    password: str
    role: str
    totp_secret: str | None
    _last_step: int | None = field(default=None, repr=False)

    def code(self) -> str:
        """A code the service has not seen yet (each code works once; the service accepts
        one step either side of now). The current step first, then the next one, so a code
        stays good for at least 30 s on a busy machine: two sign-ins per user per 30 s."""
        if self.totp_secret is None:
            return ""
        now = int(datetime.now(UTC).timestamp()) // credentials.STEP
        step = max(now, (self._last_step or now - 1) + 1)
        if step > now + 1:
            raise RuntimeError("more than two sign-ins of one user in 30 s")
        self._last_step = step
        return credentials.totp_now(secret=self.totp_secret, now=_at(step))

    def form(self, csrf: str, next_: str | None = None) -> dict[str, str]:
        """The sign-in form's fields."""
        data = {
            "csrf_token": csrf,
            "email": self.email,
            "password": self.password,
            "code": self.code(),
        }
        if next_:
            data["next"] = next_
        return data


def _at(step: int) -> datetime:
    return datetime.fromtimestamp(step * credentials.STEP + 1, UTC)


async def seed_staff(
    env: dict[str, str],
    box: SecretBox,
    group_id: str,
    role: str,
    sites: list[str] | None = None,
    *,
    totp: bool | None = None,
    status: str = "active",
) -> StaffLogin:
    """An active user of `group_id` with a password (and TOTP: always for group admins)."""
    settings = StaggerConfig(
        var_dir=env["STAGGER_VAR_DIR"], database_url=env.get("STAGGER_DATABASE_URL")
    )
    engine = create_engine(settings.service_database_url("config"))
    try:
        store = StaffStore(session_factory(engine))
        user_id = uuid.uuid4().hex[:16]
        email = f"{role.replace('_', '-')}-{user_id[:6]}@example.org"
        password = secrets.token_urlsafe(12)
        secret = credentials.new_totp_secret() if (totp or role == "group_admin") else None
        now = datetime.now(UTC)
        await store.add_user(
            {
                "user_id": user_id,
                "group_id": group_id,
                "email": email,
                "name": "",
                "role": role,
                "sites": sorted(sites or []),
                "status": status,
                "password_hash": credentials.hash_password(password),
                "totp_secret": box.seal(secret) if secret else None,
                "created_at": now,
                "updated_at": now,
            },
            {
                "token_hash": secrets.token_hex(32),
                "user_id": user_id,
                "expires_at": now + timedelta(hours=1),
                "used_at": now,
                "created_at": now,
            },
        )
    finally:
        await engine.dispose()
    return StaffLogin(user_id, group_id, email, password, role, secret)


async def sign_in(client: httpx.AsyncClient, login: StaffLogin, **headers: str) -> httpx.Response:
    """Fetch the sign-in page and post the form; the answer (303 when accepted)."""
    page = await client.get("/console/login")
    match = CSRF.search(page.text)
    assert match is not None, page.text[:500]
    return await client.post("/console/login", data=login.form(match.group(1)), headers=headers)
