"""What the config service's commands answer and refuse, and what a response may show. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shared.domain.site_settings import SettingsError, SiteSettings
from shared.net.outbound import url_endpoint
from shared.secrets import REDACTED, is_sealed

Channel = Literal["sms", "email"]


class GatewayUnavailable(RuntimeError):
    """No gateway replica answered a request."""


class NotFound(LookupError):
    """No such group or site (or the caller may not know it exists)."""


class VersionMismatch(Exception):
    """The caller's If-Match version is not the aggregate's current version."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"the settings changed since version {expected}; now at {actual}")
        self.expected = expected
        self.actual = actual


class AccountInUse(SettingsError):
    """The SMS provider account is used by a site of another group (which is not named:
    the caller may not know it exists)."""

    def __init__(self, field: str = "sms.provider.account_id") -> None:
        super().__init__(
            {
                field: "this SMS provider account is already used by another group; each "
                "group needs its own provider account"
            }
        )


@dataclass(frozen=True)
class Outcome:
    """The result of a settings command."""

    version: int
    changed: bool
    changes: list[dict[str, Any]]
    warnings: list[dict[str, str]]


def redact(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings for a response: every sealed secret replaced by a fixed mask (or null)."""

    def walk(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if is_sealed(node):
            return REDACTED
        return node

    return walk(dict(settings))  # type: ignore[no-any-return]


def destinations(settings: SiteSettings) -> dict[str, tuple[str, int]]:
    """The hosts a site's settings make Stagger connect to: field path → (host, port)."""
    found: dict[str, tuple[str, int]] = {}
    for path, provider in (
        ("sms.provider.base_url", settings.sms.provider),
        ("sms.secondary_provider.base_url", settings.sms.secondary_provider),
    ):
        endpoint = url_endpoint(provider.base_url) if provider.base_url else None
        if endpoint is not None:
            found[path] = endpoint
    if settings.email.smtp.host:
        found["email.smtp.host"] = (settings.email.smtp.host, settings.email.smtp.port)
    if settings.email.imap.host:
        found["email.imap.host"] = (settings.email.imap.host, settings.email.imap.port)
    sign_in = settings.email.sign_in  # the token endpoint and Graph are destinations too
    for path, url in (
        ("email.sign_in.token_url", sign_in.token_url),
        ("email.sign_in.graph_url", sign_in.graph_url),
    ):
        endpoint = url_endpoint(url) if url else None
        if endpoint is not None:
            found[path] = endpoint
    return found
