"""Sending through Microsoft Graph, with the same outcomes (and never-twice rules) as SMTP.

`POST /users/{mailbox}/sendMail` with the message's MIME, base64-encoded, as `text/plain`
(Graph's documented way to send MIME). What an answer means:

| answer | outcome |
|---|---|
| `202 Accepted` | `sent` |
| `429`, `5xx`, connection refused before the request went out | `retry` (`Retry-After`) |
| `401`/`403` (after one fresh token) | `hold`: permissions or consent, the settings must change |
| other `4xx` | `failed`, with Graph's error code |
| timeout or lost connection after the request went out | `ambiguous`: Sent Items is searched |

Sent Items is searched with `$filter=internetMessageId eq '<…>'`: Exchange files a message
sent with `sendMail` there (saveToSentItems is the default), keeping our Message-ID.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from services.email_gateway.adapters.smtp import SmtpOutcome
from shared.domain.email_sign_in import GRAPH_URL
from shared.email_auth.login import OAuthLogin
from shared.email_auth.provider import TokenRefused, TokenUnavailable

log = logging.getLogger(__name__)


class GraphUnavailable(Exception):
    """Graph could not answer a Sent Items search now."""


def _graph_error(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        code, message = error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        code = message = None
    text = f"{code}: {message}" if code and message else (code or message or "")
    return f"HTTP {response.status_code}" + (f" ({text})" if text else "")


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


class GraphMail:
    """Graph calls for every account this replica sends through."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            options: dict[str, Any] = {"timeout": self.timeout, "trust_env": False}
            if self._transport is not None:
                options["transport"] = self._transport()
            self._client = httpx.AsyncClient(**options)
        return self._client

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @staticmethod
    def _base(base_url: str | None, mailbox: str) -> str:
        return f"{(base_url or GRAPH_URL).rstrip('/')}/users/{quote(mailbox, safe='@')}"

    async def send(
        self, login: OAuthLogin, base_url: str | None, mailbox: str, mime: bytes
    ) -> SmtpOutcome:
        """One sendMail call; never raises."""
        url = f"{self._base(base_url, mailbox)}/sendMail"
        body = base64.b64encode(mime)
        for fresh in (False, True):
            try:
                token = (await login.token(fresh=fresh)).value
            except TokenRefused as exc:
                return SmtpOutcome("hold", "login", f"OAuth sign-in for Microsoft Graph: {exc}")
            except TokenUnavailable as exc:
                return SmtpOutcome("retry", "login", f"OAuth sign-in for Microsoft Graph: {exc}")
            try:
                response = await self._http().post(
                    url,
                    content=body,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                return SmtpOutcome("retry", "connect", f"cannot reach Microsoft Graph: {exc}")
            except httpx.HTTPError as exc:
                # The request may have reached Exchange: only Sent Items can tell.
                return SmtpOutcome(
                    "ambiguous", "send", f"Microsoft Graph did not answer sendMail: {exc!r}"
                )
            status = response.status_code
            if status == 202:
                return SmtpOutcome("sent", "send", "202 Accepted", 202)
            if status in (401, 403) and not fresh:
                continue  # the cached token may have been revoked early
            if status in (401, 403):
                return SmtpOutcome(
                    "hold", "login", f"Microsoft Graph refused sendMail: {_graph_error(response)}"
                )
            if status == 429 or status >= 500:
                return SmtpOutcome(
                    "retry",
                    "send",
                    f"Microsoft Graph: {_graph_error(response)}",
                    status,
                    retry_after=_retry_after(response),
                )
            return SmtpOutcome(
                "failed", "send", f"Microsoft Graph refused the message: {_graph_error(response)}"
            )
        raise AssertionError("unreachable")

    async def in_sent_items(
        self, login: OAuthLogin, base_url: str | None, mailbox: str, message_id: str
    ) -> bool:
        """True if Sent Items holds a message with this Message-ID (raises GraphUnavailable)."""
        quoted = message_id.replace("'", "''")
        url = f"{self._base(base_url, mailbox)}/mailFolders/SentItems/messages"
        params = {"$filter": f"internetMessageId eq '{quoted}'", "$select": "id,internetMessageId"}
        try:
            token = (await login.token()).value
            response = await self._http().get(
                url, params=params, headers={"Authorization": f"Bearer {token}"}
            )
        except (TokenRefused, TokenUnavailable, httpx.HTTPError) as exc:
            raise GraphUnavailable(f"Sent Items could not be searched: {exc}") from exc
        if response.status_code != 200:
            raise GraphUnavailable(f"Sent Items could not be searched: {_graph_error(response)}")
        found = response.json().get("value") or []
        return any(m.get("internetMessageId") == message_id for m in found)

    async def get(
        self, login: OAuthLogin, url: str, *, max_bytes: int | None = None
    ) -> httpx.Response:
        """An authorised GET (raises GraphUnavailable on any failure). With `max_bytes`, a
        longer body is cut there (the caller records the message from its header)."""
        try:
            token = (await login.token()).value
            request = self._http().build_request(
                "GET", url, headers={"Authorization": f"Bearer {token}"}
            )
            response = await self._http().send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if max_bytes is not None and len(body) > max_bytes:
                        break
            finally:
                await response.aclose()
        except (TokenRefused, TokenUnavailable, httpx.HTTPError) as exc:
            raise GraphUnavailable(f"Microsoft Graph could not be read: {exc}") from exc
        if response.status_code != 200:
            raise GraphUnavailable(f"Microsoft Graph: {_graph_error(response)}")
        return httpx.Response(200, content=bytes(body), headers=response.headers)

    def mailbox_url(self, base_url: str | None, mailbox: str) -> str:
        """`…/users/{mailbox}` for a Graph base URL."""
        return self._base(base_url, mailbox)
