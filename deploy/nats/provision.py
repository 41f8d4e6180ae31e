"""Declare Stagger's JetStream streams and durable consumers with the `admin` NATS user.

With the per-service users of deploy/nats/accounts.conf, Stagger's services may read stream
information but not create or change streams. Run this once before the first start and again
before every upgrade (it is idempotent: it creates what is missing and brings what differs to
the declared configuration, `shared/bus/topology.py`):

    STAGGER_NATS_URL=nats://127.0.0.1:4301,nats://127.0.0.1:4302,nats://127.0.0.1:4303 \\
    STAGGER_NATS_USER=admin STAGGER_NATS_PASSWORD=... STAGGER_STREAM_REPLICAS=3 \\
        python deploy/nats/provision.py

It reads the same `STAGGER_*` variables as the services (URL, user, password or credentials
file, replicas) and waits up to STAGGER_STARTUP_TIMEOUT_SECONDS for NATS and for JetStream (a
fresh cluster elects its meta leader first). Exit code 0 when every stream and consumer matches,
2 when NATS or JetStream never answered.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

# Run from a checkout (python deploy/nats/provision.py) or with the installed package (the image;
# docker-compose.yml mounts this file into it).
_HERE = Path(__file__).resolve()
ROOT = _HERE.parents[2] if len(_HERE.parents) > 2 else _HERE.parent
if (ROOT / "shared" / "bus" / "topology.py").exists() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
from nats.aio.client import Client  # noqa: E402

from shared.bus.topology import CONSUMERS, STREAMS, ensure_consumer, ensure_streams  # noqa: E402
from shared.config import StaggerSettings, load_settings  # noqa: E402

log = logging.getLogger("stagger.provision")


async def _connection_error(exc: Exception) -> None:
    # nats-py's default prints a traceback per failed attempt; the retry loop reports instead.
    log.debug("nats: %s: %s", type(exc).__name__, exc)


async def connect(settings: StaggerSettings) -> Client:
    """Connect with the settings' URL and credentials."""
    options: dict[str, object] = {
        "servers": settings.nats_servers,
        "name": "stagger-provision",
        "connect_timeout": 2,
        "max_reconnect_attempts": 3,
        "error_cb": _connection_error,
    }
    if settings.nats_user:
        options["user"] = settings.nats_user
        if settings.nats_password is not None:
            options["password"] = settings.nats_password.get_secret_value()
    if settings.nats_creds:
        options["user_credentials"] = str(settings.nats_creds)
    return await nats.connect(**options)  # type: ignore[arg-type]


async def provision(settings: StaggerSettings) -> None:
    """Create or update every stream and durable consumer; retry until the deadline."""
    deadline = time.monotonic() + settings.startup_timeout_seconds
    delay = 0.5
    while True:
        try:
            nc = await connect(settings)
            try:
                js = nc.jetstream(timeout=10)
                await ensure_streams(js, settings.stream_replicas)
                for spec in CONSUMERS:
                    await ensure_consumer(js, spec.durable)
            finally:
                await nc.close()
            return
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("waiting for NATS/JetStream: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def main() -> int:
    """Entry point; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings()
    try:
        asyncio.run(provision(settings))
    except Exception as exc:
        log.error("provisioning failed: %s: %s", type(exc).__name__, exc)
        return 2
    log.info(
        "provisioned %d streams and %d durable consumers with %d replica(s)",
        len(STREAMS),
        len(CONSUMERS),
        settings.stream_replicas,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
