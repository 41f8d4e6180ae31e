"""`stagger admin create` and `stagger group sso` against a real NATS and config database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from services.config.staff.store import StaffStore
from shared.config import StaggerConfig
from shared.db.engine import create_engine, session_factory
from tests.support.processes import ROOT

LINK = re.compile(r"https?://\S+/console/invitation/([A-Za-z0-9_-]{40,})")


def stagger(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def cli_env(nats_url: str, var_dir: Path) -> dict[str, str]:
    env = {**os.environ, "STAGGER_NATS_URL": nats_url, "STAGGER_VAR_DIR": str(var_dir)}
    env.pop("STAGGER_DATABASE_URL", None)
    env["STAGGER_PUBLIC_URL"] = "https://stagger.example.org"
    return env


async def test_admin_create_makes_the_group_and_an_invited_admin(
    nats_url: str, tmp_path: Path
) -> None:
    env = cli_env(nats_url, tmp_path / "var")
    group = f"g-{uuid.uuid4().hex[:8]}"
    email = f"boss-{group}@smiles.example"

    made = stagger(env, "admin", "create", "--group", group, "--email", email.upper())
    assert made.returncode == 0, made.stderr
    assert f"group {group} created" in made.stdout
    first = LINK.search(made.stdout)
    assert first and first.group(0).startswith("https://stagger.example.org/console/invitation/")

    again = stagger(env, "admin", "create", "--group", group, "--email", email)
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stdout.splitlines()[0]
    second = LINK.search(again.stdout)
    assert second and second.group(1) != first.group(1), "a still-invited admin gets a new link"

    engine = create_engine(StaggerConfig(var_dir=tmp_path / "var").service_database_url("config"))
    try:
        user = await StaffStore(session_factory(engine)).user_by_email(email)
    finally:
        await engine.dispose()
    assert user is not None
    assert (user.group_id, user.role, user.status) == (group, "group_admin", "invited")

    elsewhere = stagger(env, "admin", "create", "--group", "other-group", "--email", email)
    assert elsewhere.returncode == 1
    assert "email" in elsewhere.stderr and "already a user" in elsewhere.stderr

    bad = stagger(env, "admin", "create", "--group", "Not A Group", "--email", "x@y.example")
    assert bad.returncode == 1
    assert "group" in bad.stderr


def test_group_sso_set_show_and_off(nats_url: str, tmp_path: Path) -> None:
    env = cli_env(nats_url, tmp_path / "var")
    group = f"g-{uuid.uuid4().hex[:8]}"
    secret = f"very-secret-{uuid.uuid4().hex}"

    refused = stagger(
        env, "group", "sso", "set", group, "--preset", "google", "--client-id", "abc",
        "--client-secret", secret,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "allowed_domain" in refused.stderr

    done = stagger(
        env, "group", "sso", "set", group, "--preset", "entra", "--tenant", "contoso.example",
        "--client-id", "abc", "--client-secret", secret, "--allowed-domain", "contoso.example",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "https://login.microsoftonline.com/contoso.example/v2.0" in done.stdout
    assert "https://stagger.example.org/console/sso/callback" in done.stdout

    shown = stagger(env, "group", "sso", "show", group)
    assert shown.returncode == 0
    assert "set (sealed)" in shown.stdout and secret not in shown.stdout + done.stdout

    off = stagger(env, "group", "sso", "off", group)
    assert "turned off" in off.stdout
    assert "is off" in stagger(env, "group", "sso", "show", group).stdout
