"""The audit service's API, called server-side with the signed-in user's own token.

The audit service applies its own access rules to that token; the console never widens them.
When it cannot be reached (or answers 5xx) the pages show an "audit service unavailable" panel
instead of failing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx


class AuditUnavailable(Exception):
    """The audit service did not answer usefully."""


class AuditNotFound(Exception):
    """The audit service has nothing the caller may see there."""


class AuditClient:
    """Thin async client of `/api/v1/audit`."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self._timeout)
        return self._client

    async def close(self) -> None:
        """Release connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get(self, token: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET a JSON document; AuditUnavailable or AuditNotFound on failure."""
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self._http().get(
                f"/api/v1/audit{path}",
                params=clean,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise AuditUnavailable(type(exc).__name__) from None
        if response.status_code == 404:
            raise AuditNotFound(path)
        if response.status_code == 409 and path == "/verify":
            return response.json()
        if response.status_code >= 400:
            raise AuditUnavailable(f"HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise AuditUnavailable("not JSON") from None

    async def events(
        self, token: str, *, pages: int = 5, limit: int = 1000, **filters: Any
    ) -> list[dict[str, Any]]:
        """Up to `pages` pages of events matching the filters, oldest first."""
        found: list[dict[str, Any]] = []
        cursor: int | None = 0
        for _ in range(pages):
            page = await self.get(token, "/events", {**filters, "cursor": cursor, "limit": limit})
            found.extend(page.get("events", []))
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        return found

    async def stream(
        self, token: str, path: str, params: dict[str, Any]
    ) -> tuple[httpx.Response, AsyncIterator[bytes]]:
        """A streamed GET (exports): the response and its body chunks."""
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        client = self._http()
        request = client.build_request(
            "GET",
            f"/api/v1/audit{path}",
            params=clean,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(self._timeout, read=None),
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise AuditUnavailable(type(exc).__name__) from None
        if response.status_code >= 400:
            await response.aclose()
            raise AuditUnavailable(f"HTTP {response.status_code}")

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_bytes():
                    yield chunk
            finally:
                await response.aclose()

        return response, body()
