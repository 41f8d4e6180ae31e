"""The optional state file: written atomically, in the background, soon after every change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.sms_provider_sim.adapters.store import serialise

log = logging.getLogger(__name__)

# Coalesce bursts of changes: under load one write covers many messages.
MIN_INTERVAL_SECONDS = 0.05


def read_state(path: Path) -> dict[str, Any] | None:
    """The saved document, or None when there is no file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    """Write `document` so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


class Persister:
    """Writes snapshots to the state file whenever `mark_dirty` has been called."""

    def __init__(self, path: Path, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._snapshot = snapshot
        self._dirty = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.create_task(self._run(), name="sms-sim-state-writer")

    def mark_dirty(self) -> None:
        """Something changed: write it out soon."""
        self._dirty.set()

    async def _run(self) -> None:
        while not self._closing:
            await self._dirty.wait()
            self._dirty.clear()
            if self._closing:
                break
            document_source = self._snapshot()
            try:
                # Serialising and writing happen off the loop; requests keep flowing meanwhile.
                await asyncio.to_thread(self._write, document_source)
            except OSError:
                log.exception("could not write the state file", extra={"path": str(self.path)})
            await asyncio.sleep(MIN_INTERVAL_SECONDS)

    def _write(self, snapshot: dict[str, Any]) -> None:
        write_atomically(self.path, serialise(snapshot))

    async def close(self) -> None:
        """Stop the writer (letting a write in progress finish) and write the final state."""
        self._closing = True
        self._dirty.set()
        if self._task is not None:
            # Not cancelled: a cancelled to_thread write would still finish later and could
            # replace the final file below with an older one.
            await self._task
        self._write(self._snapshot())
