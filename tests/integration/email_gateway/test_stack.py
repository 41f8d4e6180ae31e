"""End to end through `./dev up`'s services (`stagger up`): the config API, the scheduler's
cycles and send-now, the email gateway, and the local SMTP sink.

Automatic mode at "3 emails per minute" scaled down twenty times (60 a minute, one a second,
checks every minute): nine queued emails arrive one cycle's spacing apart with correct headers.
Manual mode holds them until send-now, which delivers all at once.
"""

from __future__ import annotations

import email.policy
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus import subjects
from shared.bus.topology import SETTINGS
from shared.config import StaggerConfig
from shared.eventstore import EventStore
from shared.runtime.nats_server import free_port
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.support.smtp import SinkProcess, start_sink_process
from tests.support.stack import start_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def _stack_runs_the_sink(var_dir: Path) -> bool:
    from services.cli.stack import stack_processes

    settings = StaggerConfig(var_dir=var_dir, nats_url="nats://127.0.0.1:1")
    return any(p.name == "smtp_sink" for p in stack_processes(settings))


def _window_around_now() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=3)).strftime("%H:%M"),
    }


def _email(port: int, *, mode: str, per_minute: float) -> dict[str, Any]:
    return {
        "email": {
            "enabled": True,
            "address": "front@smile.example",
            "display_name": "Smile Dental",
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
            "mode": mode,
            "per_minute": per_minute,
            "check_every_minutes": 1,
            "sessions": [_window_around_now()],
        }
    }


async def test_automatic_pace_and_send_now_through_the_stack(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    key = generate_key()
    sink_port = free_port()
    extra = {"STAGGER_SECRET_KEY": key, "STAGGER_SMTP_SINK_PORT": str(sink_port)}
    own_sink: SinkProcess | None = None
    if not _stack_runs_the_sink(var_dir):
        # Until `stagger up` lists the sink, run the same program beside the stack.
        own_sink = start_sink_process(var_dir / "smtp-sink", STAGGER_SMTP_SINK_PORT=str(sink_port))
    sink = own_sink or SinkProcess(None, sink_port, var_dir / "smtp-sink")  # type: ignore[arg-type]
    stack = start_stack(var_dir, extra)
    nc = None
    try:
        await stack.healthy()
        nc = await nats.connect(f"nats://127.0.0.1:{stack.env['STAGGER_NATS_PORT']}")
        group = "g-stack"
        handlers = ConfigHandlers(
            nc, SettingsStore(EventStore(nc, SETTINGS)), SecretBox([key.encode()]), None
        )
        await handlers.create_group(group, "Smile Group", {}, actor="test:operator")
        _, token = await issue_token(nc, group_id=group, role="group_admin")
        api = httpx.AsyncClient(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        async with api:
            for site_id, settings in (
                ("auto", _email(sink_port, mode="automatic", per_minute=60)),
                ("manual", _email(sink_port, mode="manual", per_minute=3)),
            ):
                created = await api.post(
                    f"/api/v1/groups/{group}/sites",
                    json={
                        "site_id": site_id,
                        "name": site_id,
                        "timezone": "UTC",
                        "settings": settings,
                    },
                )
                assert created.status_code == 201, created.text

            async def submit(site_id: str) -> list[str]:
                messages = [
                    {
                        "to": f"patient{i}@example.org",
                        "subject": f"Recall {i}",
                        "body": f"Dear patient {i}, your check-up is due.",
                        "category": "recall",
                    }
                    for i in range(9)
                ]
                reply = await api.post(
                    f"/api/v1/sites/{site_id}/messages",
                    json={"channel": "email", "messages": messages},
                )
                assert reply.status_code == 202, reply.text
                return [m["message_id"] for m in reply.json()["messages"]]

            manual_ids = await submit("manual")
            auto_ids = await submit("auto")

            async def queued(site_id: str) -> int:
                reply = await nc.request(
                    subjects.rpc("email_gateway", "queue_depth"),
                    json.dumps({"site_id": site_id}).encode(),
                    timeout=5,
                )
                return int(json.loads(reply.data)["queued"])

            def arrived(ids: list[str]) -> list[dict[str, Any]]:
                wanted = {f"<{i}@smile.example>" for i in ids}
                return [r for r in sink.journal() if r["message_id"] in wanted]

            # Automatic: the scheduler's next cycle (within a minute) releases the nine, one a
            # second.
            await wait_until(
                lambda: len(arrived(auto_ids)) == 9,
                timeout=150,
                interval=0.5,
                message="nine automatic emails at the sink",
            )
            times = [r["received_at"] for r in arrived(auto_ids)]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert min(gaps) >= 0.9, gaps  # one a second: never faster than the pace
            assert max(times) - min(times) < 30, "one cycle, not one email per cycle"

            # Manual: held while queued, however many cycles pass…
            await wait_until(lambda: _equals(queued("manual"), 9), timeout=30, message="nine held")
            assert arrived(manual_ids) == []
            # …until send-now, which sends them all at once.
            pressed = time.time()
            reply = await api.post("/api/v1/sites/manual/send-now", json={"channel": "email"})
            assert reply.status_code == 202, reply.text
            await wait_until(
                lambda: len(arrived(manual_ids)) == 9,
                timeout=60,
                interval=0.2,
                message="send-now delivered",
            )
            times = [r["received_at"] for r in arrived(manual_ids)]
            assert min(times) >= pressed
            assert max(times) - min(times) < 5, "no delay between manual sends (3/min → 20 s)"

        messages = sink.messages()
        assert len(messages) == 18
        for message in messages:
            assert message["From"].addresses[0].display_name == "Smile Dental"
            assert message["Message-ID"].endswith("@smile.example>")
            assert message["Date"].datetime is not None
            assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:")
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert all(isinstance(m.policy, email.policy.EmailPolicy) for m in messages)
    finally:
        if nc is not None:
            await nc.close()
        stack.interrupt()
        if own_sink is not None:
            own_sink.stop()


async def _equals(value: Any, expected: int) -> bool:
    return (await value) == expected
