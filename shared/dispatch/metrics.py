"""The delivery engine's Prometheus metrics (one registry per process, so module-level)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENT = Counter("stagger_sends_total", "Messages handed to a provider", ["channel"])
FAILURES = Counter(
    "stagger_send_failures_total", "Provider refusals and errors", ["channel", "kind"]
)
OUTCOMES = Counter("stagger_terminal_total", "Terminal outcomes", ["channel", "outcome"])
THROTTLE_WAIT = Histogram(
    "stagger_throttle_wait_seconds",
    "Wait for a send slot",
    ["channel"],
    buckets=(0, 0.01, 0.1, 0.5, 1, 5, 20, 60, 300),
)
TICKS_SEEN = Counter("stagger_ticks_total", "Ticks taken", ["channel", "result"])
TICK_LAG = Histogram(
    "stagger_tick_start_lag_seconds",
    "Tick start minus its scheduled instant",
    ["channel"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
)
QUEUE_DEPTH = Gauge("stagger_queue_depth", "Messages waiting", ["channel", "site"])
