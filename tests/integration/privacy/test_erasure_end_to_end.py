"""Must-show of docs/privacy.md: send an SMS (simulator) and an email (SMTP sink) through the
whole stack, opt the number out, erase both recipients, and find neither the addresses nor the
bodies in NATS's data dir, the SQLite files or the logs; the audit chain still verifies and the
number stays suppressed."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from nats.aio.client import Client

from services.audit.composition import AuditService
from shared.bus.topology import DISPATCH, OPTOUTS
from shared.config import StaggerConfig
from shared.runtime.nats_server import free_port
from shared.runtime.service import running
from tests.integration.audit.test_trail import all_hashes, audit_settings, stream_count
from tests.integration.sms_gateway.harness import events
from tests.support.postgres import asyncpg_dsn
from tests.support.smtp import SinkProcess, start_sink_process
from tests.support.stack import simulator_provider, stack_with_group
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


async def _types(nc: Client, stream: str, message_id: str) -> set[str]:
    return {
        e.type for e in await events(nc, stream) if getattr(e.data, "message_id", "") == message_id
    }


def _leaks(var_dir: Path, needles: list[bytes]) -> list[str]:
    """Files of Stagger's own under `var_dir` holding any needle (the simulator's files are
    the phone network's, not ours, and are left out)."""
    found = []
    for path in var_dir.rglob("*"):
        if not path.is_file() or "sim" in path.name or "smtp-sink" in str(path):
            continue
        raw = path.read_bytes()
        found += [f"{path.relative_to(var_dir)}: {n!r}" for n in needles if n in raw]
    return found


async def test_an_erased_number_and_body_are_nowhere_and_stay_suppressed(
    tmp_path: Path, database_url: str
) -> None:
    # SQLite: the stack's own files under the var dir; PostgreSQL (CI): a dump of its database.
    postgres = database_url.startswith("postgresql")
    var_dir = tmp_path / "var"
    sink_port = free_port()
    own_sink: SinkProcess | None = None
    if not _stack_runs_the_sink(var_dir):
        own_sink = start_sink_process(tmp_path / "smtp-sink", STAGGER_SMTP_SINK_PORT=str(sink_port))
    phone = f"+614{secrets.randbelow(10**8):08d}"
    body = f"Private note {secrets.token_hex(6)}: your check-up is on Monday."
    address = f"patient-{secrets.token_hex(5)}@example.org"
    letter = f"Private letter {secrets.token_hex(6)} about your treatment plan."
    try:
        async with stack_with_group(
            tmp_path,
            {"STAGGER_SMTP_SINK_PORT": str(sink_port)},
            receipt_delay=0.2,
            database_url=database_url if postgres else None,
        ) as up:
            stack, nc, sim_url, group = up.stack, up.nc, up.sim_url, up.group_id
            site_id = await up.create_site(
                {
                    "sms": {
                        "provider": simulator_provider(sim_url),
                        "sender_id": "+61491570999",
                        "mode": "immediate",
                    },
                    "email": {
                        "enabled": True,
                        "address": "front@smile.example",
                        "smtp": {"host": "127.0.0.1", "port": sink_port, "security": "none"},
                        "mode": "manual",
                    },
                }
            )
            async with up.api() as api:

                async def send() -> str:
                    submitted = await api.post(
                        f"/api/v1/sites/{site_id}/messages",
                        json={"channel": "sms", "messages": [{"to": phone, "body": body}]},
                    )
                    assert submitted.status_code == 202, submitted.text
                    return str(submitted.json()["messages"][0]["message_id"])

                mailed = await api.post(
                    f"/api/v1/sites/{site_id}/messages",
                    json={
                        "channel": "email",
                        "messages": [{"to": address, "subject": "Your plan", "body": letter}],
                    },
                )
                assert mailed.status_code == 202, mailed.text
                email_id = mailed.json()["messages"][0]["message_id"]
                await wait_until(
                    lambda: _has(nc, email_id, "stagger.dispatch.queued"),
                    timeout=30,
                    message="queued",
                )
                now = await api.post(f"/api/v1/sites/{site_id}/send-now", json={"channel": "email"})
                assert now.status_code in (200, 202), now.text
                await wait_until(
                    lambda: _has(nc, email_id, "stagger.dispatch.sent"),
                    timeout=60,
                    message="the email sent",
                )
                first = await send()
                await wait_until(
                    lambda: _has(nc, first, "stagger.dispatch.delivered"),
                    timeout=60,
                    message="sent and delivered",
                )
                # The patient replies STOP: the number is on the group's list.
                async with httpx.AsyncClient(base_url=sim_url, trust_env=False) as sim:
                    stop = await sim.post(
                        "/v1/admin/inbound",
                        json={
                            "account": "sim-default",
                            "from": phone,
                            "to": "+61491570999",
                            "body": "STOP",
                        },
                    )
                    assert stop.status_code == 202, stop.text
                await wait_until(lambda: _opted_out(nc), timeout=30, message="the opt-out recorded")

                # The reply reaches the export through its own read model, which may trail the
                # opt-out by a moment on a busy machine.
                held: dict[str, Any] = await wait_until(
                    lambda: _export_with_reply(api, group, phone),
                    timeout=30,
                    message="the export holding the STOP reply",
                )
                assert [m["to"] for m in held["messages"]] == [phone]
                assert [r["body"] for r in held["replies"]] == ["STOP"]
                assert [o["how"] for o in held["opt_outs"]] == ["keyword"]

                erased = await api.post(
                    f"/api/v1/groups/{group}/erasures", json={"recipient": phone}
                )
                assert erased.status_code == 200, erased.text
                assert erased.json()["keys_erased"] >= 2
                again = await api.post(
                    f"/api/v1/groups/{group}/erasures", json={"recipient": phone}
                )
                assert again.status_code == 200 and again.json()["already_erased"] is True
                assert phone not in erased.text + again.text
                mail_erased = await api.post(
                    f"/api/v1/groups/{group}/erasures", json={"recipient": address}
                )
                assert mail_erased.json()["keys_erased"] >= 2, mail_erased.text
                after = (await api.get(f"/api/v1/groups/{group}/recipients/{phone}/export")).json()
                assert [m["to"] for m in after["messages"]] == ["erased"]
                assert [r["body"] for r in after["replies"]] == ["erased"]
                assert len(after["erasures"]) == 1

                # Still suppressed after the erasure: the list kept the salted hash.
                second = await send()
                await wait_until(
                    lambda: _has(nc, second, "stagger.dispatch.suppressed"),
                    timeout=60,
                    message="the second message suppressed",
                )
            # Rebuilding the trail from the streams, by a service without the stack's key,
            # reproduces every hash of the running trail: the chain covers the ciphertext.
            total = await stream_count(nc)
            live = database_url if postgres else f"sqlite+aiosqlite:///{var_dir / 'audit.db'}"
            await wait_until(lambda: _hashes_at_least(live, total), timeout=60, message="trail")
            rebuilt = f"sqlite+aiosqlite:///{tmp_path / 'rebuilt-audit.db'}"
            nats_url = f"nats://127.0.0.1:{stack.env['STAGGER_NATS_PORT']}"
            async with running(
                AuditService(), audit_settings(nats_url, rebuilt, tmp_path / "rebuild")
            ):
                await wait_until(
                    lambda: _hashes_at_least(rebuilt, total), timeout=60, message="rebuilt"
                )
            assert (await all_hashes(rebuilt))[:total] == (await all_hashes(live))[:total]
            audit_env = {**stack.env, "STAGGER_VAR_DIR": str(var_dir)}
            verify = [sys.executable, "-m", "services.cli.main", "audit", "verify"]
            checked = subprocess.run(
                verify, env=audit_env, capture_output=True, text=True, check=False
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        if own_sink is not None:
            own_sink.stop()
    texts = [phone[1:], body[:20], address, letter[:20]]
    needles = [phone.encode(), body.encode(), letter.encode()] + [t.encode() for t in texts]
    assert _leaks(var_dir, needles) == []
    if postgres:
        dump = subprocess.run(
            ["pg_dump", "--data-only", asyncpg_dsn(database_url)],
            capture_output=True,
            check=True,
        ).stdout
        assert b"COPY" in dump  # the dump holds the tables' rows
        assert [n for n in needles if n in dump] == []
    # The same search does find clear text where it legitimately is: the patient's mailbox
    # (the SMTP sink's files), so an empty result above is not a search that cannot match.
    mailbox = [p for p in tmp_path.rglob("*") if p.is_file() and "smtp-sink" in str(p)]
    assert any(letter.encode() in p.read_bytes() for p in mailbox)
    ours = [
        line for line in stack.lines if "sms_provider_sim" not in line and "smtp_sink" not in line
    ]
    assert [line for line in ours if any(t in line for t in texts)] == []


async def _hashes_at_least(url: str, n: int) -> bool:
    try:
        return len(await all_hashes(url)) >= n
    except sa.exc.OperationalError:
        return False  # the trail's table is not there yet


def _stack_runs_the_sink(var_dir: Path) -> bool:
    from services.cli.stack import stack_processes

    settings = StaggerConfig(var_dir=var_dir, nats_url="nats://127.0.0.1:1")
    return any(p.name == "smtp_sink" for p in stack_processes(settings))


async def _has(nc: Client, message_id: str, event_type: str) -> bool:
    return event_type in await _types(nc, DISPATCH, message_id)


async def _opted_out(nc: Client) -> bool:
    return any(e.type == "stagger.optout.opted_out" for e in await events(nc, OPTOUTS))


async def _export_with_reply(
    api: httpx.AsyncClient, group: str, phone: str
) -> dict[str, Any] | None:
    """The recipient's export once it holds their reply (None before)."""
    exported = await api.get(f"/api/v1/groups/{group}/recipients/{phone}/export")
    assert exported.status_code == 200, exported.text
    held: dict[str, Any] = exported.json()
    return held if held["replies"] else None
