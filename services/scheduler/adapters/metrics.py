"""Prometheus metrics of the scheduler (served on `/metrics` by the runtime)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TICKS_PUBLISHED = Counter(
    "stagger_scheduler_ticks_published_total",
    "Ticks this replica published and JetStream acknowledged (duplicates included).",
    ["channel", "scope", "manual"],
)
TICKS_DUPLICATE = Counter(
    "stagger_scheduler_ticks_duplicate_total",
    "Ticks JetStream had already stored (another replica, or a resend, published them first).",
    ["channel", "scope"],
)
TICKS_SKIPPED = Counter(
    "stagger_scheduler_ticks_skipped_total",
    "Ticks not published: `late` (their instant passed beyond the grace before their turn), "
    "`failed` (not acknowledged), `empty` (every site of the account in a blackout).",
    ["reason"],
)
TICK_LAG = Histogram(
    "stagger_scheduler_tick_lag_seconds",
    "Publish time minus scheduled instant.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SCHEDULES = Gauge(
    "stagger_scheduler_schedules",
    "Schedules this replica tracks: `site` (staggered SMS, email cycles) and `account` "
    "(immediate SMS).",
    ["scope"],
)
SITES = Gauge("stagger_scheduler_sites", "Sites whose settings this replica knows.")
SEND_NOW = Counter(
    "stagger_scheduler_send_now_total",
    "Send-now commands handled: `tick` (manual tick stored), `ignored` (channel off), "
    "`dead_letter` (malformed).",
    ["outcome"],
)
PUBLISH_AHEAD = Gauge(
    "stagger_scheduler_publish_ahead_seconds",
    "How far ahead of their instants ticks are published now (grows with the ticks in sight "
    "when publishing is slow; between PUBLISH_AHEAD_SECONDS and PUBLISH_AHEAD_MAX_SECONDS).",
)
PUBLISH_RATE = Gauge(
    "stagger_scheduler_publish_rate",
    "Ticks a second this replica published lately (batches weighted by size).",
)
