"""Running benchmarks, printing ratios and keeping `bench/results.json`.

Each benchmark measures Stagger's path and the raw baseline (plain nats-py, aiosmtplib or an
HTTP loop against the same server) in the same run, alternating them over several rounds and
taking medians, because the machines are shared and only side-by-side ratios hold.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results.json"


@dataclass
class Result:
    """One benchmark entry; `ratio` is oriented so that higher is better."""

    name: str
    unit: str
    value: float
    baseline: float
    higher_is_better: bool = True
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    ratio_floor: float = 0.0
    """When lower is better, the ratio divides by at least this (a lag can be negative)."""

    @property
    def ratio(self) -> float:
        """value ÷ baseline (or baseline ÷ max(value, ratio_floor) when lower is better)."""
        if self.higher_is_better:
            return self.value / self.baseline if self.baseline else 0.0
        divisor = max(self.value, self.ratio_floor)
        return self.baseline / divisor if divisor else 0.0

    def entry(self) -> dict[str, Any]:
        """The JSON form stored in results.json."""
        return {
            "unit": self.unit,
            "value": round(self.value, 3),
            "baseline": round(self.baseline, 3),
            "ratio": round(self.ratio, 3),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "notes": self.notes,
            **({"details": self.extra} if self.extra else {}),
        }


async def alternate(
    project: Callable[[], Awaitable[float]],
    baseline: Callable[[], Awaitable[float]],
    rounds: int = 5,
) -> tuple[float, float, list[float], list[float]]:
    """Run baseline and project alternately; return their medians and all samples."""
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        theirs.append(await baseline())
        ours.append(await project())
    return statistics.median(ours), statistics.median(theirs), ours, theirs


def rate(count: int, started: float) -> float:
    """Operations per second since `started` (a perf_counter reading)."""
    return count / (time.perf_counter() - started)


def machine() -> str:
    """A short description of where the run happened."""
    try:
        cpus = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        cpus = "?"
    return f"{platform.python_implementation()} {platform.python_version()}, {cpus} cores"


def save(results: list[Result]) -> None:
    """Merge results into results.json (other benchmarks' entries are kept)."""
    existing: dict[str, Any] = {}
    if RESULTS.exists():
        existing = json.loads(RESULTS.read_text())
    for result in results:
        entry = result.entry()
        entry["notes"] = f"{entry['notes']} [{machine()}]".strip()
        existing[result.name] = entry
    RESULTS.write_text(
        json.dumps(dict(sorted(existing.items())), indent=2, ensure_ascii=False) + "\n"
    )


def print_table(results: list[Result]) -> None:
    """A readable table of this run."""
    print(f"{'benchmark':<34} {'value':>12} {'baseline':>12} {'unit':<10} {'ratio':>6}")
    for r in results:
        print(f"{r.name:<34} {r.value:>12.2f} {r.baseline:>12.2f} {r.unit:<10} {r.ratio:>6.2f}")
