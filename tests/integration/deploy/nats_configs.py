"""Run nats-server with the configuration files in deploy/nats, on free ports in a temp dir.

The test configuration is the deploy file itself with only its addresses, ports and data
directory substituted (each substitution must match, so a reshaped deploy file fails loudly
here instead of being silently bypassed); accounts.conf and passwords.conf are included from
deploy/nats unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client

from shared.runtime.nats_server import NatsServer, free_port

ROOT = Path(__file__).resolve().parents[3]
DEPLOY_NATS = ROOT / "deploy" / "nats"
STANDALONE = DEPLOY_NATS / "standalone.conf"
CLUSTER = [DEPLOY_NATS / "cluster" / f"nats-{n}.conf" for n in (1, 2, 3)]
PROVISION = DEPLOY_NATS / "provision.py"

USERS = ("config", "scheduler", "email_gateway", "sms_gateway", "audit", "admin")


def dev_password(user: str) -> str:
    """The development placeholder password of a user (deploy/nats/passwords.conf)."""
    return f"{user.replace('_', '-')}-dev-password"


def _substitute(text: str, pattern: str, replacement: str, *, count: int = 1) -> str:
    new, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == count, f"expected {count} match(es) of {pattern!r} in the deploy config"
    return new


def render(
    source: Path,
    directory: Path,
    *,
    client_port: int,
    http_port: int,
    store_dir: Path,
    cluster_port: int | None = None,
    route_ports: tuple[int, ...] = (),
) -> Path:
    """Write `source` into `directory` with test ports and paths; return the new file."""
    text = source.read_text()
    text = _substitute(text, r"^listen: 127\.0\.0\.1:\d+$", f"listen: 127.0.0.1:{client_port}")
    text = _substitute(text, r"^http: 127\.0\.0\.1:\d+$", f"http: 127.0.0.1:{http_port}")
    text = _substitute(text, r'^  store_dir: ".*"$', f'  store_dir: "{store_dir}"')
    include = re.search(r"^include (\S+)$", text, flags=re.MULTILINE)
    assert include is not None, "the deploy config includes the accounts"
    accounts = (source.parent / include.group(1)).resolve()
    # nats-server only resolves includes relative to the including file.
    text = _substitute(
        text, r"^include \S+$", f"include {os.path.relpath(accounts, directory.resolve())}"
    )
    if cluster_port is not None:
        text = _substitute(
            text, r"^  listen: 127\.0\.0\.1:\d+$", f"  listen: 127.0.0.1:{cluster_port}"
        )
        routes = iter(route_ports)
        text = re.sub(
            r"nats-route://127\.0\.0\.1:\d+",
            lambda _: f"nats-route://127.0.0.1:{next(routes)}",
            text,
        )
        assert next(routes, None) is None, "every route was substituted"
    target = directory / source.name
    target.write_text(text)
    return target


@dataclass
class DeployedNats:
    """One nats-server running a deploy/nats configuration."""

    server: NatsServer
    http_port: int
    log_file: Path

    @property
    def url(self) -> str:
        return self.server.url

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def violations(self) -> list[str]:
        """The server's permission refusals ("Publish Violation", "Subscription Violation")."""
        return [line for line in self.log().splitlines() if re.search(r" Violation - ", line)]


@contextlib.contextmanager
def standalone(tmp: Path) -> Iterator[DeployedNats]:
    """deploy/nats/standalone.conf on free ports."""
    tmp.mkdir(parents=True, exist_ok=True)
    port, http_port = free_port(), free_port()
    conf = render(STANDALONE, tmp, client_port=port, http_port=http_port, store_dir=tmp / "store")
    log_file = tmp / "nats.log"
    server = NatsServer(port=port, store_dir=tmp / "store", config_file=conf, log_file=log_file)
    server.start()
    try:
        yield DeployedNats(server, http_port, log_file)
    finally:
        server.stop()


def start_cluster_node(
    root: Path, index: int, ports: list[int], http_ports: list[int], route_ports: list[int]
) -> tuple[NatsServer, Path]:
    """Render node `index` of deploy/nats/cluster on the given ports under `root` and start it;
    returns the server and its log file."""
    source = CLUSTER[index]
    directory = root / source.stem
    directory.mkdir(parents=True, exist_ok=True)
    conf = render(
        source,
        directory,
        client_port=ports[index],
        http_port=http_ports[index],
        store_dir=directory / "store",
        cluster_port=route_ports[index],
        route_ports=tuple(p for j, p in enumerate(route_ports) if j != index),
    )
    log_file = directory / "nats.log"
    server = NatsServer(
        port=ports[index],
        store_dir=directory / "store",
        name=source.stem,
        config_file=conf,
        log_file=log_file,
    )
    server.start()
    return server, log_file


@contextlib.contextmanager
def cluster(tmp: Path) -> Iterator[list[DeployedNats]]:
    """deploy/nats/cluster/nats-{1,2,3}.conf on free ports: a 3-node cluster."""
    ports = [free_port() for _ in CLUSTER]
    http_ports = [free_port() for _ in CLUSTER]
    route_ports = [free_port() for _ in CLUSTER]
    nodes: list[DeployedNats] = []
    try:
        for i in range(len(CLUSTER)):
            server, log_file = start_cluster_node(tmp, i, ports, http_ports, route_ports)
            nodes.append(DeployedNats(server, http_ports[i], log_file))
        yield nodes
    finally:
        for node in nodes:
            node.server.stop()


def provision(url: str, *, replicas: int = 1, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run deploy/nats/provision.py as the admin user, the way an operator does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_")}
    env.update(
        {
            "STAGGER_NATS_URL": url,
            "STAGGER_NATS_USER": "admin",
            "STAGGER_NATS_PASSWORD": dev_password("admin"),
            "STAGGER_STREAM_REPLICAS": str(replicas),
            "STAGGER_STARTUP_TIMEOUT_SECONDS": str(timeout),
        }
    )
    return subprocess.run(
        [sys.executable, str(PROVISION)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        check=False,
    )


@dataclass
class Connection:
    """A client connection as one user, with the asynchronous errors the server sent it."""

    nc: Client
    errors: list[Exception] = field(default_factory=list)

    def refusals(self) -> list[str]:
        """The permission errors the server sent (nats-py reports them in lower case)."""
        return [str(e).lower() for e in self.errors if "permissions violation" in str(e).lower()]

    def refused(self, action: str, subject: str) -> Callable[[], bool]:
        """A condition: the server refused `action` ("publish"/"subscription") on `subject`."""
        wanted = f'permissions violation for {action} to "{subject}"'.lower()
        return lambda: any(wanted in r for r in self.refusals())


def connect_as(url: str, user: str, **options: object) -> AbstractAsyncContextManager[Connection]:
    """Connect as `user` with its development password; errors are collected, not raised."""
    return connected(url, user, dev_password(user), name=f"test-{user}", **options)


@contextlib.asynccontextmanager
async def connected(
    url: str, user: str, password: str, **options: object
) -> AsyncIterator[Connection]:
    """Connect as `user`, without reconnecting; errors are collected, not raised."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(
        url,
        user=user,
        password=password,
        error_cb=on_error,
        allow_reconnect=False,
        **options,  # type: ignore[arg-type]
    )
    try:
        yield Connection(nc, errors)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
