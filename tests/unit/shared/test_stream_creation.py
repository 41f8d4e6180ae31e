"""Creating a stream while the server is still removing the account's storage directory."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError, ServerError

from shared.bus import topology
from shared.bus.topology import STORE_ATTEMPTS, STORE_BUSY, STREAMS, ensure_stream


class StoreBusyThenFine:
    """A JetStream context whose first `busy` stream creations fail as nats-server's do when
    the account's storage directory is being removed (error 10049)."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.added: list[StreamConfig] = []

    async def stream_info(self, name: str) -> Any:
        raise NotFoundError(code=404, err_code=10059, description="stream not found")

    async def add_stream(self, config: StreamConfig) -> Any:
        if self.busy > 0:
            self.busy -= 1
            raise ServerError(
                code=500, err_code=STORE_BUSY, description="error creating store for stream"
            )
        self.added.append(config)
        return None


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topology, "STORE_FIRST_WAIT_SECONDS", 0.0)


async def test_a_busy_store_is_tried_again_until_the_stream_is_created() -> None:
    js = StoreBusyThenFine(busy=STORE_ATTEMPTS - 1)
    await ensure_stream(js, STREAMS[0])  # type: ignore[arg-type]
    assert [c.name for c in js.added] == [STREAMS[0].name]


async def test_a_store_that_stays_busy_is_reported() -> None:
    js = StoreBusyThenFine(busy=STORE_ATTEMPTS)
    with pytest.raises(ServerError):
        await ensure_stream(js, STREAMS[0])  # type: ignore[arg-type]
    assert js.added == []
