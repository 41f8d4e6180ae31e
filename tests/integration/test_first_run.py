"""The first ten minutes start here: a fresh clone's `./dev up` on an empty var dir prints a
one-time sign-in link for the demo group's admin within 60 s, following it (set a password and
the authenticator app, sign in) shows the two demo sites, and Ctrl-C ends it quietly.

The clone is of the committed HEAD. Its `.venv` reuses this environment's installed packages
(a `.pth` line) and points `stagger` at the clone's own code, so what runs is the clone while
the test does not spend minutes downloading dependencies; `./dev` sees an up-to-date venv.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.config.staff import credentials
from shared.runtime.nats_server import free_port
from tests.support.stack import ROOT, pids_mentioning, service_ports
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

LINK = re.compile(r"(http://\S+/console/invitation/[A-Za-z0-9_-]+)")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
KEY = re.compile(r'<code id="totp-key">([A-Z2-7]+)</code>')


def fresh_clone(where: Path) -> Path:
    """A clone of HEAD with a ready `.venv` whose `stagger` runs the clone's code."""
    clone = where / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    venv = clone / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    site.mkdir(parents=True, exist_ok=True)
    # The clone first, then this environment's third-party packages (its own editable
    # install of the work tree is a .pth there, which a plain path line does not run).
    (site / "stagger-clone.pth").write_text(f"{clone}\n{sysconfig.get_path('purelib')}\n")
    script = venv / "bin" / "stagger"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nfrom services.cli.main import app\n\napp()\n")
    script.chmod(0o755)
    (venv / ".stagger-installed").touch()
    return clone


@dataclass
class DevUp:
    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)

    def link(self) -> str | None:
        for line in self.lines:
            found = LINK.search(line)
            if found:
                return found.group(1)
        return None


def start_dev_up(clone: Path, env: dict[str, str]) -> DevUp:
    process = subprocess.Popen(
        ["./dev", "up"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the process group, as in a terminal
    )
    run = DevUp(process)

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            run.lines.append(raw.decode(errors="replace").rstrip())

    threading.Thread(target=pump, daemon=True).start()
    return run


def code_after(secret: str, used: int | None) -> tuple[str, int]:
    """A TOTP code of a step after `used` and its step (the service takes one step either
    side of now, and each step once)."""
    now = int(datetime.now(UTC).timestamp()) // credentials.STEP
    step = now if used is None else max(now - 1, used + 1)
    at = datetime.fromtimestamp(step * credentials.STEP + 1, UTC)
    return credentials.totp_now(secret, at), step


async def test_fresh_clone_dev_up_prints_a_link_that_shows_the_demo_sites(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path)
    http_port = free_port()
    env = {
        **os.environ,
        "STAGGER_NATS_PORT": str(free_port()),
        "STAGGER_SIM_PORT": str(free_port()),
        "STAGGER_SMTP_SINK_PORT": str(free_port()),
        "STAGGER_LOG_FORMAT": "console",
        **service_ports(),
        "STAGGER_HTTP_PORT": str(http_port),
        "STAGGER_PUBLIC_URL": f"http://127.0.0.1:{http_port}",
    }
    for inherited in ("STAGGER_NATS_URL", "STAGGER_DATABASE_URL", "STAGGER_VAR_DIR", "VIRTUAL_ENV"):
        env.pop(inherited, None)
    run = start_dev_up(clone, env)
    started = time.monotonic()
    try:
        link = await wait_until(
            run.link,
            timeout=60,
            interval=0.5,
            message="the one-time sign-in link",
            describe=lambda: "\n".join(run.lines[-40:]),
        )
        assert time.monotonic() - started < 60
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as web:
            page = await web.get(link)
            assert page.status_code == 200, page.text[:500]
            assert "admin@demo-dental.example" in page.text
            secret = KEY.search(page.text)
            csrf = CSRF.search(page.text)
            assert secret and csrf
            password = "demo-password-for-the-test"
            first, used = code_after(secret.group(1), None)
            accepted = await web.post(
                link,
                data={
                    "csrf_token": csrf.group(1),
                    "password": password,
                    "repeat": password,
                    "code": first,
                },
            )
            assert accepted.status_code == 200, accepted.text[:500]
            login = await web.get("/console/login")
            csrf = CSRF.search(login.text)
            assert csrf
            signed = await web.post(
                "/console/login",
                data={
                    "csrf_token": csrf.group(1),
                    "email": "admin@demo-dental.example",
                    "password": password,
                    "code": code_after(secret.group(1), used)[0],
                },
            )
            assert signed.status_code == 303, signed.text[:500]
            sites = await web.get("/console/")
            assert sites.status_code == 200
            assert "Demo Dental London" in sites.text
            assert "Demo Dental Sydney" in sites.text
    finally:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGINT)
        code = run.process.wait(60)
    output = "\n".join(run.lines)
    assert code == 0, output[-3000:]
    assert "error: recipe" not in output
    assert "Traceback" not in output, output[-3000:]
    await wait_until(
        lambda: pids_mentioning(str(clone)) == [], timeout=30, message="every process gone"
    )
