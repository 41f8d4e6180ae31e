"""Access tokens for email accounts: Authlib's httpx clients do the grants; this module caches
one token per account, refreshes it before it runs out and sorts failures into "the settings
must change" (`TokenRefused`: the account is held) and "try again later" (`TokenUnavailable`).

Why Authlib: one maintained library covers all three grants (client credentials with a secret
or a certificate's `private_key_jwt` assertion, the RFC 7523 JWT bearer grant Google's
domain-wide delegation uses, and refresh tokens), is async over httpx (which the project
already uses and guards with the outbound allow-list), and lets a test point any grant at a
local authorization server. MSAL and google-auth are synchronous and each cover one provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc.jwk import RSAKey

from shared.email_auth.credentials import OAuthCredentials

with warnings.catch_warnings():
    # Authlib prefers the `httpx2` fork and warns when it falls back to httpx, which is the
    # project's HTTP client; the fallback is the supported path for httpx 0.28. Its own
    # module adds an "always" filter on import, so that module is imported first.
    import authlib.deprecate

    warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import (
        AsyncAssertionClient,
        AsyncOAuth2Client,
        OAuthError,
    )
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

log = logging.getLogger(__name__)

REFUSALS = frozenset(
    {
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "access_denied",
        "invalid_scope",
        "unsupported_grant_type",
        "invalid_request",
        "consent_required",
    }
)
"""Token endpoint errors that no retry fixes: the account waits until its settings change."""


class TokenRefused(Exception):
    """The authorization server refused the credentials (revoked consent, disabled app, wrong
    tenant or secret). `reason` is the server's error code and description."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenUnavailable(Exception):
    """The token endpoint could not answer now (unreachable, 5xx, 429): retry later."""


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it stops working (monotonic seconds)."""

    value: str = field(repr=False)
    expires_at: float
    lifetime: float


RotationSaver = Callable[[OAuthCredentials, str], Awaitable[None]]
"""Called with the new refresh token when the server rotated it (persist it sealed)."""
RotationLoader = Callable[[OAuthCredentials], Awaitable[str | None]]
"""The latest rotated refresh token for these credentials, if one was saved."""


def refresh_due(token: AccessToken, now: float, margin: float = 60.0) -> bool:
    """True once a token has less than `margin` seconds, or half its life, left (short-lived
    tokens keep room for a busy machine and for servers that round expiry down)."""
    return token.expires_at - now <= min(margin, token.lifetime / 2)


class TokenProvider:
    """Per-account token cache in front of the grants (one grant in flight per account)."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        verify: Any = True,
        save_rotated: RotationSaver | None = None,
        load_rotated: RotationLoader | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._transport = transport
        self._verify = verify
        self._save = save_rotated
        self._load = load_rotated
        self._clock = clock
        # Keyed by the credentials' fingerprint: the SMTP and IMAP accounts of one sign-in
        # share a token, and a refresh token's rotation chain is never forked.
        self._cache: dict[str, AccessToken] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._rotated: dict[str, str] = {}
        self.grants = 0

    async def token(self, creds: OAuthCredentials, *, fresh: bool = False) -> AccessToken:
        """A token with time left, from the cache or a new grant."""
        key = creds.fingerprint
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if not fresh and cached is not None and not refresh_due(cached, self._clock()):
                return cached
            token = await self._grant(creds)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = token
            return token

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"timeout": self.timeout, "trust_env": False}
        if self._transport is not None:
            kwargs["transport"] = self._transport()
        else:
            kwargs["verify"] = self._verify
        return kwargs

    async def _grant(self, creds: OAuthCredentials) -> AccessToken:
        started = self._clock()
        try:
            answer = await self._ask(creds)
        except OAuthError as exc:
            reason = f"{exc.error}: {exc.description}" if exc.description else str(exc.error)
            if exc.error in REFUSALS:
                raise TokenRefused(
                    f"the token endpoint refused the credentials ({reason})"
                ) from exc
            raise TokenUnavailable(f"the token endpoint answered {reason}") from exc
        except httpx.HTTPStatusError as exc:
            raise TokenUnavailable(
                f"the token endpoint answered HTTP {exc.response.status_code}"
            ) from exc
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise TokenUnavailable(f"cannot reach the token endpoint: {exc}") from exc
        self.grants += 1
        value = answer.get("access_token")
        if not isinstance(value, str) or not value:
            raise TokenUnavailable("the token endpoint answered without an access token")
        try:
            lifetime = float(answer.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        rotated = answer.get("refresh_token")
        if (
            creds.refresh_token is not None
            and isinstance(rotated, str)
            and rotated
            and rotated != await self._current_refresh(creds)
        ):
            self._rotated[creds.fingerprint] = rotated
            if self._save is not None:
                await self._save(creds, rotated)
        return AccessToken(value, started + lifetime, lifetime)

    async def _current_refresh(self, creds: OAuthCredentials) -> str:
        """The refresh token to present: the last rotated one for these settings, else the
        configured one (a newly configured token starts a new chain)."""
        held = self._rotated.get(creds.fingerprint)
        if held is not None:
            return held
        if self._load is not None:
            loaded = await self._load(creds)
            if loaded:
                self._rotated[creds.fingerprint] = loaded
                return loaded
        assert creds.refresh_token is not None
        return creds.refresh_token

    async def _ask(self, creds: OAuthCredentials) -> dict[str, Any]:
        kwargs = self._client_kwargs()
        if creds.method == "google_workspace":
            header = {"alg": "RS256", **({"kid": creds.key_id} if creds.key_id else {})}
            async with AsyncAssertionClient(
                token_endpoint=creds.token_url,
                issuer=creds.issuer,
                subject=creds.user,
                audience=creds.token_url,
                claims={"scope": creds.scope},
                key=RSAKey.import_key(creds.private_key or ""),
                header=header,
                **kwargs,
            ) as assertion:
                return dict(await assertion.refresh_token())
        if creds.method == "microsoft_365" and creds.private_key is not None:
            async with AsyncOAuth2Client(
                creds.client_id,
                RSAKey.import_key(creds.private_key),
                token_endpoint_auth_method="private_key_jwt",
                scope=creds.scope,
                **kwargs,
            ) as client:
                # Entra ID finds the certificate by its SHA-1 thumbprint in the header.
                client.register_client_auth_method(
                    PrivateKeyJWT(creds.token_url, headers={"x5t": creds.thumbprint})
                )
                return dict(
                    await client.fetch_token(creds.token_url, grant_type="client_credentials")
                )
        if creds.method == "microsoft_365":
            async with AsyncOAuth2Client(
                creds.client_id,
                creds.client_secret,
                token_endpoint_auth_method="client_secret_post",
                scope=creds.scope,
                **kwargs,
            ) as client:
                return dict(
                    await client.fetch_token(creds.token_url, grant_type="client_credentials")
                )
        method = "client_secret_post" if creds.client_secret else "none"
        async with AsyncOAuth2Client(
            creds.client_id,
            creds.client_secret,
            token_endpoint_auth_method=method,
            scope=creds.scope or None,
            **kwargs,
        ) as client:
            current = await self._current_refresh(creds)
            try:
                return dict(await client.refresh_token(creds.token_url, refresh_token=current))
            except OAuthError as exc:
                # Another replica may have rotated the chain since: its token is in the store.
                latest = await self._load(creds) if self._load is not None else None
                if exc.error != "invalid_grant" or not latest or latest == current:
                    raise
                self._rotated[creds.fingerprint] = latest
                return dict(await client.refresh_token(creds.token_url, refresh_token=latest))
