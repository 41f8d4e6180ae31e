"""Health: each replica's own readiness, its heartbeat on NATS, and the system-wide board.

A replica is *live* while its process runs and *ready* once NATS, its database and its own
start-up work are done. Every replica announces itself on `stagger.health.<service>`; the config
service's `/healthz` reads those heartbeats to report every service's status in one place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from nats.aio.client import Client
from nats.aio.msg import Msg

from shared.bus import subjects

log = logging.getLogger(__name__)

Status = Literal["starting", "ready", "draining", "stopped"]
Check = Callable[[], Awaitable[bool]]


@dataclass
class Health:
    """Readiness of this replica, as reported on HTTP and NATS."""

    service: str
    instance: str
    status: Status = "starting"
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    checks: dict[str, Check] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    last_results: dict[str, bool] = field(default_factory=dict)

    def add_check(self, name: str, check: Check) -> None:
        """A named async probe that must pass for the replica to be ready."""
        self.checks[name] = check

    async def evaluate(self) -> dict[str, bool]:
        """Run every check (each bounded to 2 s)."""
        results = {}
        for name, check in self.checks.items():
            try:
                results[name] = bool(await asyncio.wait_for(check(), 2.0))
            except Exception:
                results[name] = False
        self.last_results = results
        return results

    @property
    def ready(self) -> bool:
        """Ready to take work: started and every check passing at last evaluation."""
        return self.status == "ready" and all(self.last_results.values())

    def snapshot(self) -> dict[str, Any]:
        """What a heartbeat and `/readyz` carry."""
        return {
            "service": self.service,
            "instance": self.instance,
            "status": self.status,
            "ready": self.ready,
            "checks": self.last_results,
            "details": self.details,
            "started_at": self.started_at,
            "time": datetime.now(UTC).isoformat(),
        }


async def publish_heartbeat(nc: Client, health: Health) -> None:
    """Announce this replica's current state once."""
    await nc.publish(subjects.health(health.service), json.dumps(health.snapshot()).encode())


async def heartbeat_loop(nc: Client, health: Health, interval: float) -> None:
    """Evaluate checks and announce the result every `interval` seconds, until cancelled."""
    while True:
        await health.evaluate()
        try:
            await publish_heartbeat(nc, health)
        except Exception as exc:  # NATS down: the HTTP probe still tells the truth
            log.debug("heartbeat not published", extra={"error": str(exc)})
        await asyncio.sleep(interval)


@dataclass
class ReplicaSeen:
    """The last heartbeat of one replica."""

    snapshot: dict[str, Any]
    received: float


class HealthBoard:
    """Collects heartbeats of every replica of every service (used by `/healthz`)."""

    def __init__(self, expected: tuple[str, ...], interval: float) -> None:
        self.expected = expected
        self.interval = interval
        self._seen: dict[tuple[str, str], ReplicaSeen] = {}

    async def subscribe(self, nc: Client) -> None:
        """Start listening to every service's heartbeat."""

        async def on_heartbeat(msg: Msg) -> None:
            try:
                snapshot = json.loads(msg.data)
                key = (str(snapshot["service"]), str(snapshot["instance"]))
            except (ValueError, KeyError, TypeError):
                return
            self._seen[key] = ReplicaSeen(snapshot, time.monotonic())

        await nc.subscribe(f"{subjects.HEALTH_PREFIX}.*", cb=on_heartbeat)

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(all ready, per-service status with its replicas)."""
        stale_after = self.interval * 3
        now = time.monotonic()
        services: dict[str, Any] = {}
        for service in self.expected:
            replicas = []
            for (name, instance), seen in sorted(self._seen.items()):
                if name != service:
                    continue
                fresh = now - seen.received <= stale_after
                replicas.append(
                    {
                        "instance": instance,
                        "status": seen.snapshot.get("status") if fresh else "silent",
                        "ready": bool(seen.snapshot.get("ready")) and fresh,
                        "checks": seen.snapshot.get("checks", {}),
                        "seconds_since_heartbeat": round(now - seen.received, 1),
                    }
                )
            ready = any(r["ready"] for r in replicas)
            services[service] = {
                "status": "ready" if ready else ("down" if not replicas else "not ready"),
                "ready_replicas": sum(1 for r in replicas if r["ready"]),
                "replicas": replicas,
            }
        all_ready = all(s["status"] == "ready" for s in services.values())
        return all_ready, services
