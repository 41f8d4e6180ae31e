"""The OpenID Connect relying party: Authlib's OAuth 2 client and ID token claims rules.

Authorization code flow with PKCE (S256), a random state and nonce per sign-in. The ID token
is checked against the issuer's published keys (JWKS, fetched again once when a token names a
key we do not have, as after a key rotation), its issuer, audience, expiry, nonce and at_hash.
Discovery documents and key sets are cached for an hour. Every connection goes through the
outbound guard, so a provider URL cannot reach an address the deployment forbids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from shared.domain.oidc import Provider, issuer_accepted
from shared.net.outbound import OutboundGuard, guarded_transport
from shared.secrets import SecretBox

CACHE_SECONDS = 3600.0
LEEWAY_SECONDS = 60
SCOPE = "openid email profile"


class SsoError(Exception):
    """The provider could not be reached or answered something that cannot be trusted."""


@dataclass(frozen=True)
class Pending:
    """A sign-in in progress: what the callback must match (kept in the flow cookie)."""

    group_id: str
    state: str
    nonce: str
    verifier: str
    next: str
    started: float


class OidcClient:
    """Starts and finishes sign-ins with groups' providers."""

    def __init__(self, box: SecretBox, guard: OutboundGuard | None, timeout: float = 10.0) -> None:
        self.box = box
        self.guard = guard
        self.timeout = timeout
        self._metadata: dict[str, tuple[float, dict[str, Any]]] = {}
        self._keys: dict[str, tuple[float, dict[str, Any]]] = {}

    def _http_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"timeout": self.timeout, "follow_redirects": False}
        if self.guard is not None:
            options["transport"] = guarded_transport(self.guard)
        return options

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(**self._http_options()) as http:
                answer = await http.get(url, headers={"Accept": "application/json"})
                answer.raise_for_status()
                body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SsoError(f"cannot read {url}: {exc}") from exc
        if not isinstance(body, dict):
            raise SsoError(f"{url} did not answer a JSON object")
        return body

    async def metadata(self, provider: Provider) -> dict[str, Any]:
        """The provider's discovery document (cached), its issuer checked."""
        cached = self._metadata.get(provider.discovery_url)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        meta = await self._get_json(provider.discovery_url)
        if not issuer_accepted(provider, str(meta.get("issuer", ""))):
            raise SsoError(
                f"the discovery document names issuer {meta.get('issuer')!r}, "
                f"not {provider.issuer!r}"
            )
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(meta.get(key), str):
                raise SsoError(f"the discovery document has no {key}")
        self._metadata[provider.discovery_url] = (time.monotonic(), meta)
        return meta

    async def _key_set(self, meta: dict[str, Any], *, fresh: bool = False) -> KeySet:
        uri = meta["jwks_uri"]
        cached = self._keys.get(uri)
        if fresh or not cached or time.monotonic() - cached[0] >= CACHE_SECONDS:
            cached = (time.monotonic(), await self._get_json(uri))
            self._keys[uri] = cached
        try:
            return KeySet.import_key_set(cached[1])  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise SsoError(f"the provider's key set cannot be read: {exc}") from exc

    async def begin(
        self, provider: Provider, redirect_uri: str, next_page: str
    ) -> tuple[str, Pending]:
        """The provider's authorization URL to send the browser to, and what to remember."""
        meta = await self.metadata(provider)
        pending = Pending(
            group_id=provider.group_id,
            state=generate_token(32),
            nonce=generate_token(32),
            verifier=generate_token(64),
            next=next_page,
            started=time.time(),
        )
        extra: dict[str, str] = {}
        if provider.preset == "google" and provider.allowed_domain:
            extra["hd"] = provider.allowed_domain  # Google's account chooser shows only these
        async with AsyncOAuth2Client(
            provider.client_id,
            scope=SCOPE,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
        ) as oauth:
            url, _ = oauth.create_authorization_url(
                meta["authorization_endpoint"],
                state=pending.state,
                code_verifier=pending.verifier,
                nonce=pending.nonce,
                **extra,
            )
        return url, pending

    async def finish(
        self, provider: Provider, pending: Pending, code: str, redirect_uri: str
    ) -> dict[str, Any]:
        """Redeem the code (with the PKCE verifier) and return the validated ID token claims."""
        meta = await self.metadata(provider)
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        auth_method = (
            "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        )
        try:
            async with AsyncOAuth2Client(
                provider.client_id,
                self.box.open(provider.client_secret),
                token_endpoint_auth_method=auth_method,
                redirect_uri=redirect_uri,
                code_challenge_method="S256",
                **self._http_options(),
            ) as oauth:
                token = await oauth.fetch_token(
                    meta["token_endpoint"], code=code, code_verifier=pending.verifier
                )
        except SsoError:
            raise
        except Exception as exc:  # authlib's OAuthError, httpx errors, a non-JSON answer
            raise SsoError(f"the provider refused the code: {exc}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SsoError("the provider sent no ID token")
        return await self.validate(provider, meta, id_token, pending.nonce, token)

    async def validate(
        self,
        provider: Provider,
        meta: dict[str, Any],
        id_token: str,
        nonce: str,
        token: dict[str, Any],
    ) -> dict[str, Any]:
        """The ID token's claims after checking signature, issuer, audience, expiry, nonce."""
        algorithms = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        registry = JWSRegistry(algorithms=[a for a in algorithms if a != "none"])
        try:
            try:
                decoded = jwt.decode(id_token, await self._key_set(meta), registry=registry)
            except InvalidKeyIdError:
                fresh = await self._key_set(meta, fresh=True)
                decoded = jwt.decode(id_token, fresh, registry=registry)
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                {
                    "iss": {"essential": True, "values": [meta["issuer"]]},
                    "aud": {"essential": True, "values": [provider.client_id]},
                },
                {
                    "nonce": nonce,
                    "client_id": provider.client_id,
                    "access_token": token.get("access_token"),
                },
            )
            claims.validate(leeway=LEEWAY_SECONDS)
        except SsoError:
            raise
        except (JoseError, ValueError, TypeError) as exc:
            raise SsoError(f"the ID token is not valid: {exc}") from exc
        return dict(claims)
