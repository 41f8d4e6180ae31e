"""How the config API reports a bus that does not answer: 503, Retry-After, problem+json."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NoStreamResponseError

from services.config.entrypoints import problems


def _app(error: Exception) -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.post("/boom")
    async def boom() -> None:
        raise error

    return app


@pytest.mark.parametrize(
    "error",
    [NoStreamResponseError(), NatsTimeout()],
    ids=["leader-election", "timeout"],
)
async def test_nats_errors_are_503_with_retry_after(error: Exception) -> None:
    transport = httpx.ASGITransport(app=_app(error))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.post("/boom")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 503
    assert type(error).__name__ in body["detail"]
