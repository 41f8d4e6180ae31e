"""What every console page module shares: the path prefix, the page errors, the signed-in
user, and the small request helpers. Kept apart from `app` so the page modules that `app`
installs never import it back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import Request

from services.config.console.session import Session
from shared.tokens import Principal

if TYPE_CHECKING:
    from services.config.staff.store import UserRow

HERE = Path(__file__).parent
PREFIX = "/console"
PARTIAL_HEADER = "x-stagger-partial"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class LoginRequired(Exception):
    """No signed-in staff user in the session."""


class PageNotFound(Exception):
    """Nothing the caller may see here (another site's page answers this too)."""


class Forbidden(Exception):
    """The caller's role may not do this (auditors write nothing)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsrfFailed(Exception):
    """A POST without this session's CSRF token."""


@dataclass
class User:
    """A signed-in person: their session, what they may do, and their account.

    `token` is the API token minted for this session alone (never shown): the console calls
    the API and the audit service with it, so both apply the user's role.
    """

    session: Session
    who: Principal
    token: str
    account: UserRow

    @property
    def writes(self) -> bool:
        """Whether any write control is shown at all."""
        return self.who.role in ("group_admin", "site_manager")


def web_origin(url: str) -> str:
    """The origin a browser sends for pages of `url` (scheme://host[:port], default port
    left out)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def safe_next(value: str | None) -> str:
    """A post-login destination inside the console, never another origin."""
    if value and value.startswith(PREFIX + "/") and "//" not in value and "\\" not in value:
        return value
    return PREFIX + "/"


def client_of(request: Request) -> str | None:
    """The client's address: the TCP peer, or what a trusted proxy forwarded."""
    return request.client.host if request.client else None
