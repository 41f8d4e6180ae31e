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

    python deploy/nats/provision.py producers --accounts deploy/nats/accounts.conf \\
        --credentials /secure/producers

writes one NATS user per group into the generated sections of `accounts.conf`: `producer-<group>`,
allowed to publish only `outbox.*.<site>` of that group's sites (read from SETTINGS, as `admin`)
and to receive replies only on `_INBOX_producer-<group>.>`. Each user's password is kept in the
file across runs (new groups get a random one); `<credentials>/producer-<group>.env` (mode 0600)
holds what that group's practice system needs. Run it again after creating a site, then reload
nats-server (`nats-server --signal reload`, or SIGHUP).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import secrets
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
from shared.config import StaggerConfig, load_config  # noqa: E402
from shared.sites import SiteDirectory  # noqa: E402

log = logging.getLogger("stagger.provision")


async def _connection_error(exc: Exception) -> None:
    # nats-py's default prints a traceback per failed attempt; the retry loop reports instead.
    log.debug("nats: %s: %s", type(exc).__name__, exc)


async def connect(settings: StaggerConfig) -> Client:
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


async def provision(settings: StaggerConfig) -> None:
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


USERS_BEGIN = "# BEGIN GENERATED PRODUCERS"
USERS_END = "# END GENERATED PRODUCERS"
PASSWORDS_BEGIN = "# BEGIN GENERATED PRODUCER PASSWORDS"
PASSWORDS_END = "# END GENERATED PRODUCER PASSWORDS"
_PASSWORD_LINE = re.compile(r'^(NATS_PASSWORD_PRODUCER_[A-Z0-9_]+): "([^"]*)"$', re.MULTILINE)


def producer_user(group: str) -> str:
    """NATS user name of a group's practice systems."""
    return f"producer-{group}"


def producer_inbox(group: str) -> str:
    """Reply prefix a group's producer must use (nats-py `inbox_prefix`)."""
    return f"_INBOX_producer-{group}"


def _password_variable(group: str) -> str:
    return "NATS_PASSWORD_PRODUCER_" + group.upper().replace("-", "_")


async def group_sites(settings: StaggerConfig) -> dict[str, list[str]]:
    """Every group's site ids, from the SETTINGS stream."""
    nc = await connect(settings)
    try:
        directory = SiteDirectory(nc)
        follow = asyncio.create_task(directory.follow())
        try:
            await asyncio.wait_for(directory.ready.wait(), settings.startup_timeout_seconds)
        finally:
            follow.cancel()
        groups: dict[str, list[str]] = {}
        for site in directory.all():
            groups.setdefault(site.group_id, []).append(site.site_id)
        return {group: sorted(sites) for group, sites in sorted(groups.items())}
    finally:
        await nc.close()


def _section(text: str, begin: str, end: str) -> tuple[int, int, str]:
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError(f"the accounts file has no '{begin}' ... '{end}' section")
    line_start = text.rfind("\n", 0, start) + 1
    indent = text[line_start:start]
    body_start = text.index("\n", start) + 1
    body_end = text.rfind("\n", 0, stop) + 1
    return body_start, body_end, indent


def render_producers(text: str, groups: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
    """`text` (an accounts file) with its generated sections filled for `groups`; also each
    group's password (kept from `text` when present, else new)."""
    known = dict(_PASSWORD_LINE.findall(text))
    passwords = {
        group: known.get(_password_variable(group)) or secrets.token_hex(24)
        for group, sites in groups.items()
        if sites
    }
    start, end, indent = _section(text, USERS_BEGIN, USERS_END)
    users = []
    for group in passwords:
        allow = ", ".join(f'"outbox.*.{site}"' for site in groups[group])
        users.append(
            f"{indent}{{\n"
            f"{indent}  user: {producer_user(group)}, password: ${_password_variable(group)},\n"
            f"{indent}  permissions: {{\n"
            f"{indent}    publish: {{ allow: [{allow}] }}\n"
            f'{indent}    subscribe: {{ allow: ["{producer_inbox(group)}.>"] }}\n'
            f"{indent}  }}\n"
            f"{indent}}}\n"
        )
    text = text[:start] + "".join(users) + text[end:]
    start, end, indent = _section(text, PASSWORDS_BEGIN, PASSWORDS_END)
    lines = [
        f'{indent}{_password_variable(group)}: "{password}"\n'
        for group, password in passwords.items()
    ]
    return text[:start] + "".join(lines) + text[end:], passwords


def write_producers(accounts: Path, credentials: Path, groups: dict[str, list[str]]) -> None:
    """Fill `accounts`' generated sections and write each group's credentials file."""
    text, passwords = render_producers(accounts.read_text(), groups)
    _write_private(accounts, text)
    credentials.mkdir(parents=True, exist_ok=True)
    for group, password in passwords.items():
        _write_private(
            credentials / f"{producer_user(group)}.env",
            f"# NATS credentials of group {group}'s practice systems: they may publish\n"
            f"# outbox.<channel>.<site> for {', '.join(groups[group])} only.\n"
            f"STAGGER_NATS_USER={producer_user(group)}\n"
            f"STAGGER_NATS_PASSWORD={password}\n"
            f"# Replies (publish acknowledgements) only on this prefix: nats-py\n"
            f"# inbox_prefix, nats.go nats.CustomInboxPrefix.\n"
            f"NATS_INBOX_PREFIX={producer_inbox(group)}\n",
        )


def _write_private(path: Path, text: str) -> None:
    # Written whole under a temporary name, readable by the owner only: it holds passwords.
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description="Provision Stagger's NATS.")
    commands = parser.add_subparsers(dest="command")
    producers = commands.add_parser("producers", help="per-group producer users")
    producers.add_argument("--accounts", type=Path, default=_HERE.parent / "accounts.conf")
    producers.add_argument("--credentials", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = load_config()
    if args.command == "producers":
        try:
            groups = asyncio.run(group_sites(settings))
            write_producers(args.accounts, args.credentials, groups)
        except Exception as exc:
            log.error("producer users not written: %s: %s", type(exc).__name__, exc)
            return 2
        log.info(
            "wrote producer users for %d groups into %s",
            sum(1 for sites in groups.values() if sites),
            args.accounts,
        )
        return 0
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
