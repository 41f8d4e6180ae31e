"""Single sign-on with a group's OpenID Connect provider: the pure rules (no I/O).

A group names one identity provider: Microsoft Entra ID (one tenant), Google Workspace (one
domain, checked through the `hd` claim) or any issuer found by its discovery URL. Who may sign
in is decided here from the ID token's claims and the group's staff: only a VERIFIED email of
a user already invited to, or active in, THAT group is let in.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

Preset = Literal["entra", "google", "generic"]
PRESETS: tuple[str, ...] = get_args(Preset)
WELL_KNOWN = "/.well-known/openid-configuration"
GOOGLE_ISSUER = "https://accounts.google.com"
ENTRA_ISSUER = "https://login.microsoftonline.com/{tenant}/v2.0"
# Entra's multi-tenant aliases have no single issuer, so an ID token could come from any
# organisation's directory: a group signs in through its own tenant only.
_ENTRA_ALIASES = {"common", "organizations", "consumers"}
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,255}$")
_LOOPBACK_NAMES = {"localhost"}


class OidcConfigError(ValueError):
    """A group's sign-in settings that cannot be used; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SignInRefused(Exception):
    """The identity provider vouched for someone Stagger does not let in.

    `reason` is a short code for the audit trail and logs; the person sees one message for
    every reason, so a refusal does not tell a stranger which emails belong to which group.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Provider:
    """A group's identity provider, as stored (the client secret sealed)."""

    group_id: str
    preset: Preset
    issuer: str
    discovery_url: str
    client_id: str
    client_secret: str
    allowed_domain: str | None = None


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: a verified email and the provider's subject."""

    email: str
    subject: str


@dataclass(frozen=True)
class StaffCandidate:
    """A staff user with the email the provider vouched for (from any group)."""

    user_id: str
    group_id: str
    status: str  # "invited", "active" or "disabled"


def loopback(host: str) -> bool:
    """True for this machine's own addresses (a test or development provider)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str, field: str) -> str:
    """An https URL (plain http only on loopback), without query or fragment."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise OidcConfigError(field, "must be an https:// URL")
    if parts.scheme == "http" and not loopback(parts.hostname):
        raise OidcConfigError(field, "must use https (plain http only on this machine)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise OidcConfigError(field, "must have no query, fragment or credentials")
    return text.rstrip("/")


def check_domain(value: str | None, field: str = "allowed_domain") -> str | None:
    """A lower-case DNS domain, or None when not given."""
    if value is None or not value.strip():
        return None
    domain = value.strip().lower().lstrip("@")
    if not _DOMAIN.match(domain):
        raise OidcConfigError(field, f"{value!r} is not a domain like example.com")
    return domain


def locate(
    preset: str, *, tenant: str | None = None, discovery_url: str | None = None
) -> tuple[str, str]:
    """(issuer, discovery URL) of a preset: Entra needs its tenant, generic its discovery URL."""
    if preset not in PRESETS:
        raise OidcConfigError("preset", f"choose one of {', '.join(PRESETS)}")
    if preset == "google":
        return GOOGLE_ISSUER, GOOGLE_ISSUER + WELL_KNOWN
    if preset == "entra":
        tenant = (tenant or "").strip()
        if not tenant or not _TENANT.match(tenant) or tenant.lower() in _ENTRA_ALIASES:
            raise OidcConfigError(
                "tenant", "give the directory (tenant) id or its primary domain, not common"
            )
        issuer = ENTRA_ISSUER.format(tenant=tenant)
        return issuer, issuer + WELL_KNOWN
    if not discovery_url:
        raise OidcConfigError("discovery_url", "required for a generic OpenID provider")
    url = check_url(discovery_url, "discovery_url")
    issuer = url.removesuffix(WELL_KNOWN) if url.endswith(WELL_KNOWN) else url
    return issuer, issuer + WELL_KNOWN


def provider_settings(
    group_id: str,
    *,
    preset: str,
    client_id: str,
    sealed_secret: str,
    allowed_domain: str | None = None,
    tenant: str | None = None,
    discovery_url: str | None = None,
) -> Provider:
    """Checked settings of a group's provider (OidcConfigError names the field at fault)."""
    issuer, discovery = locate(preset, tenant=tenant, discovery_url=discovery_url)
    client = client_id.strip()
    if not _CLIENT_ID.match(client):
        raise OidcConfigError("client_id", "required, printable, without spaces")
    if not sealed_secret:
        raise OidcConfigError("client_secret", "required")
    domain = check_domain(allowed_domain)
    if preset == "google" and domain is None:
        # Without it any Google account (gmail.com included) would be vouched for.
        raise OidcConfigError("allowed_domain", "required for Google Workspace (the hd claim)")
    return Provider(group_id, preset, issuer, discovery, client, sealed_secret, domain)  # type: ignore[arg-type]


_ENTRA_ISSUER = re.compile(
    r"^https://login\.microsoftonline\.com/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
    r"[0-9a-f]{12}/v2\.0$"
)


def issuer_accepted(provider: Provider, published: str) -> bool:
    """Whether a discovery document's issuer belongs to the configured provider.

    It must be the configured issuer; Entra, configured by a tenant's domain name, publishes
    its issuer with the tenant's id instead, which is accepted in that form only.
    """
    if published == provider.issuer:
        return True
    return provider.preset == "entra" and bool(_ENTRA_ISSUER.match(published))


def _true(value: Any) -> bool:
    # Some providers send the boolean as a string.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def identity(claims: Mapping[str, Any], provider: Provider) -> Identity:
    """The verified email in validated ID token claims, else SignInRefused."""
    email = claims.get("email")
    subject = str(claims.get("sub") or "")
    if not isinstance(email, str) or "@" not in email:
        raise SignInRefused("no_email", "the provider sent no email address")
    email = email.strip().lower()
    verified = _true(claims.get("email_verified"))
    if provider.preset == "entra":
        # Entra spells "this domain's owner verified the address" as the optional claim
        # xms_edov (it sends no email_verified unless configured).
        verified = verified or _true(claims.get("xms_edov"))
    if not verified:
        raise SignInRefused("email_unverified", f"{email} is not verified by the provider")
    domain = email.rsplit("@", 1)[1]
    if provider.allowed_domain is not None and domain != provider.allowed_domain:
        raise SignInRefused("domain", f"{email} is outside {provider.allowed_domain}")
    if provider.preset == "google" and claims.get("hd") != provider.allowed_domain:
        raise SignInRefused("hosted_domain", f"{email} is not a {provider.allowed_domain} account")
    return Identity(email, subject)


def admit(group_id: str, candidates: Iterable[StaffCandidate]) -> StaffCandidate:
    """The user of `group_id` the email belongs to, if they may sign in; else SignInRefused."""
    known = list(candidates)
    mine = [c for c in known if c.group_id == group_id]
    if not mine:
        if known:
            raise SignInRefused("other_group", "the email belongs to a user of another group")
        raise SignInRefused("unknown", "no user of this group has the email")
    user = mine[0]
    if user.status == "disabled":
        raise SignInRefused("disabled", "the user is disabled")
    if user.status not in ("invited", "active"):
        raise SignInRefused("status", f"the user is {user.status}")
    return user
