"""At most one log line per key per period, counting the lines left out (pure: no I/O).

Refusals an outsider can trigger (bad webhook signatures, oversized bodies) must not let them
fill the log: the first line of a period is written with how many were suppressed before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LogRateLimiter:
    """Decides which lines to write; `period` in seconds, `max_keys` bounds the memory."""

    period: float = 60.0
    max_keys: int = 100
    _last: dict[str, float] = field(default_factory=dict)
    _suppressed: dict[str, int] = field(default_factory=dict)

    def admit(self, key: str, now: float) -> int | None:
        """None: leave this line out. A number: write it, saying that many were left out
        since the last line of this key."""
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= self.max_keys:
            # Keys are a fixed set of reasons in practice; an unbounded set is a bug, and
            # forgetting the oldest keeps memory bounded without ever going silent.
            oldest = min(self._last, key=self._last.__getitem__)
            del self._last[oldest]
            self._suppressed.pop(oldest, None)
        self._last[key] = now
        return self._suppressed.pop(key, 0)
