"""The tests' OpenID Provider (tests/support/oidc, Node's `oidc-provider`) as a real process.

`npm ci` installs its pinned packages the first time (and again when package-lock.json
changes). Without Node.js the tests that need it skip with the reason, except under CI=true.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.runtime.nats_server import free_port
from tests.support.services import require

HERE = Path(__file__).parent / "oidc"
STAMP = HERE / "node_modules" / ".package-lock.json"


@dataclass
class OpenIdProvider:
    """A running provider: its issuer URL and output."""

    port: int
    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def install() -> str:
    """The node binary, after `npm ci` if the pinned packages are not installed yet."""
    node, npm = shutil.which("node"), shutil.which("npm")
    require(
        node is not None and npm is not None,
        "Node.js",
        "node and npm are needed for the test OpenID Provider (apt-get install nodejs npm)",
    )
    assert node is not None and npm is not None
    lock = HERE / "package-lock.json"
    if not STAMP.exists() or STAMP.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm ci failed:\n{done.stdout}\n{done.stderr}")
    return node


def start_provider(clients: list[dict[str, Any]], config_dir: Path) -> OpenIdProvider:
    """Start the provider with these clients on a free port; returns once it listens."""
    node = install()
    port = free_port()
    config = config_dir / f"openid-provider-{port}.json"
    config.write_text(json.dumps({"port": port, "clients": clients}))
    process = subprocess.Popen(
        [node, str(HERE / "server.js"), str(config)],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    provider = OpenIdProvider(port, process)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            provider.lines.append(line)
            if line.startswith("ready "):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError("OpenID Provider did not start:\n" + "\n".join(provider.lines))
    return provider
