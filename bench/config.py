"""Config service benchmarks.

- forecast.scaling: the pure forecast for N = 10 (baseline) and N = 1,000,000 (value), in ms.
  Ratio = baseline ÷ value: 1 means N does not matter; ≥ 0.67 means at most 1.5× slower.
- submission.batch: 10,000-message SMS batches through the HTTP API of a real config service
  process (validation, ids, segments, pipelined publish to the outbox, acks), messages/s,
  beside nats-py `publish_async` of the very same encoded messages to the same stream.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import httpx
import nats

from bench.harness import Result, alternate, rate
from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, validate
from shared.bus.topology import OUTBOX, SETTINGS, ensure_streams
from shared.domain.forecast import forecast
from shared.domain.schedule import Schedule, StaggerPace
from shared.domain.weekly import Weekday, WeeklyWindow
from shared.eventstore import EventStore
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.support.processes import service_env, start_service

WEEKDAYS = frozenset({Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI})


def forecast_ms(new: int, schedule: Schedule, repeats: int = 300) -> float:
    """Median wall time of one forecast, in milliseconds."""
    start = datetime(2026, 3, 2, 7, 13, tzinfo=UTC)
    pace = StaggerPace(timedelta(minutes=3))
    samples = []
    for i in range(repeats):
        began = time.perf_counter()
        forecast(
            schedule,
            pace,
            start + timedelta(minutes=i),
            queued=0,
            new=new,
            horizon_days=30,
            warn_after_days=5,
        )
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def forecast_scaling() -> list[Result]:
    results = []
    for zone in ("Europe/London", "Australia/Sydney"):
        schedule = Schedule(
            (
                WeeklyWindow(WEEKDAYS, clock(9), clock(12)),
                WeeklyWindow(WEEKDAYS, clock(13), clock(17)),
            ),
            (),
            (),
            zone,
        )
        small = forecast_ms(10, schedule)
        large = forecast_ms(1_000_000, schedule)
        results.append((zone, small, large))
    # The entry reports London; Sydney goes in the notes.
    zone, small, large = results[0]
    other = results[1]
    return [
        Result(
            "forecast.scaling",
            "ms",
            large,
            small,
            higher_is_better=False,
            notes=f"{zone}, Mon–Fri 09–12 and 13–17, one SMS every 3 min, horizon 30 days: "
            f"N=10 {small:.3f} ms, N=1,000,000 {large:.3f} ms; {other[0]}: N=10 {other[1]:.3f} ms, "
            f"N=1,000,000 {other[2]:.3f} ms (median of 300)",
        )
    ]


async def submission_batch(nats_url: str, batch: int = 10_000) -> list[Result]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    key = generate_key()
    box = SecretBox([key.encode()])
    handlers = ConfigHandlers(
        nc, SettingsStore(EventStore(nc, SETTINGS)), box, None, simulator_enabled=True
    )
    await handlers.create_group("bench", "Bench", {}, actor="bench")
    site = await handlers.create_site(
        "bench",
        "bench-site",
        {"name": "Bench"},
        {"sms": {"provider": {"kind": "simulator", "account_id": "a", "secret": "s"}}},
        actor="bench",
    )
    _, token = await issue_token(nc, group_id="bench", role="group_admin")
    messages = [
        {
            "to": f"+4477009{i:05d}",
            "body": f"Dear patient {i}, your check-up is due. Reply YES to book or call us.",
        }
        for i in range(batch)
    ]
    payload = {"channel": "sms", "messages": messages}
    # The baseline publishes exactly what the API publishes, encoded before the clock starts.
    _, outgoing = validate(site, SubmissionIn.model_validate(payload), "bench")

    with tempfile.TemporaryDirectory() as var:
        env = service_env(
            nats_url, Path(var), extra={"STAGGER_SECRET_KEY": key, "STAGGER_LOG_LEVEL": "WARNING"}
        )
        service = await asyncio.to_thread(start_service, "config", env)
        try:
            async with httpx.AsyncClient(
                base_url=service.url, timeout=120, headers={"Authorization": f"Bearer {token}"}
            ) as client:
                warm = await client.post("/api/v1/sites/bench-site/messages", json=payload)
                assert warm.status_code == 202, warm.text

                async def project() -> float:
                    await js.purge_stream(OUTBOX)
                    started = time.perf_counter()
                    response = await client.post("/api/v1/sites/bench-site/messages", json=payload)
                    assert response.status_code == 202, response.text
                    return rate(batch, started)

                async def baseline() -> float:
                    await js.purge_stream(OUTBOX)
                    started = time.perf_counter()
                    futures = [
                        await js.publish_async(m.subject, m.payload, headers=m.headers)
                        for m in outgoing
                    ]
                    await asyncio.gather(*futures)
                    return rate(batch, started)

                ours, raw, _, _ = await alternate(project, baseline)
        finally:
            await asyncio.to_thread(service.stop)
            await nc.close()
    return [
        Result(
            "submission.batch",
            "messages/s",
            ours,
            raw,
            notes=f"{batch}-message SMS batches over HTTP to a config service process "
            "(validation, E.164, segments, pipelined outbox publish, acks); baseline: nats-py "
            "publish_async of the same encoded messages",
        )
    ]


async def run(nats_url: str) -> list[Result]:
    """Forecast scaling and HTTP submission."""
    print("   forecast_scaling …", flush=True)
    results = forecast_scaling()
    print("   submission_batch …", flush=True)
    results += await submission_batch(nats_url)
    return results
