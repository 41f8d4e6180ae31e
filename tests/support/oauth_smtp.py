"""The SMTP sink (aiosmtpd) accepting only SASL XOAUTH2 / OAUTHBEARER, with tokens checked
against the test authorization server: the signature against its published JWKS (fetched over
HTTP), then whether the token is still active (its introspection endpoint), then that the token
was issued for the mailbox the client names. PLAIN and LOGIN are not offered.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.smtp_sink.composition import build_server
from services.smtp_sink.config import SinkConfig as SinkSettings
from services.smtp_sink.entrypoints.smtp import SinkServer
from shared.runtime.nats_server import free_port
from tests.support.oauth_server import AuthServer
from tests.support.smtp import SmtpServer


class TokenVerifier:
    """Checks bearer tokens the way a resource server would, over HTTP."""

    def __init__(self, jwks_url: str, introspection_url: str) -> None:
        with urllib.request.urlopen(jwks_url, timeout=10) as answer:
            self.keys = KeySet.import_key_set(json.load(answer))
        self.introspection_url = introspection_url
        self.accepted = 0
        self.refused: list[str] = []

    def check(self, user: str, token: str) -> str | None:
        """None when the token is good for `user`, else why not."""
        try:
            claims = jwt.decode(token, self.keys, algorithms=["RS256"]).claims
            jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
        except (JoseError, ValueError) as exc:
            return f"token does not verify: {type(exc).__name__}"
        data = urllib.parse.urlencode({"token": token}).encode()
        with urllib.request.urlopen(self.introspection_url, data, timeout=10) as answer:
            active = json.load(answer)
        if not active.get("active"):
            return "token is not active"
        if claims.get("sub") != user:
            return "token was issued for another mailbox"
        return None


def _error_challenge(reason: str) -> str:
    return json.dumps({"status": "401", "schemes": "bearer", "scope": reason})


class OAuthSMTP(SMTP):
    """aiosmtpd with the two OAuth mechanisms (and no password ones)."""

    verifier: TokenVerifier

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # RFC 4954 §4: AUTH lines may be up to 12288 octets (bearer tokens are long JWTs).
        # aiosmtpd keeps the limits in a class-wide dict: this instance gets its own.
        self.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit, {"AUTH": 12288}
        )

    async def _finish(self, user: str, token: str) -> AuthResult:
        why = await asyncio.to_thread(self.verifier.check, user, token)
        if why is None:
            self.verifier.accepted += 1
            return AuthResult(success=True, auth_data=user)
        self.verifier.refused.append(why)
        # Both mechanisms send an error challenge first; the client's answer ends it.
        await self.challenge_auth(_error_challenge(why))
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )

    async def auth_XOAUTH2(self, _: Any, args: list[str]) -> AuthResult:
        raw = await self._initial(args)
        if raw is None:
            return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in raw.decode().split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        return await self._finish(fields.get("user", ""), token)

    async def auth_OAUTHBEARER(self, _: Any, args: list[str]) -> AuthResult:
        raw = await self._initial(args)
        if raw is None:
            return AuthResult(success=False, handled=True)
        header, _sep, rest = raw.decode().partition("\x01")
        user = ""
        for part in header.split(","):
            if part.startswith("a="):
                user = part[2:].replace("=2C", ",").replace("=3D", "=")
        fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
        return await self._finish(user, fields.get("auth", "").removeprefix("Bearer "))

    async def _initial(self, args: list[str]) -> bytes | None:
        if len(args) > 1:
            encoded = args[1].encode()
        else:
            answer = await self.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return None
            # challenge_auth has already decoded base64.
            return answer
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:
            await self.push("501 5.5.2 Can't decode base64")
            return None


class OAuthSinkServer(SinkServer):
    """The sink, answering AUTH with OAuth tokens only."""

    def __init__(self, settings: SinkSettings, verifier: TokenVerifier, **kwargs: Any) -> None:
        super().__init__(settings, build_server(settings, None, keep_data=True, **kwargs).handler)
        self.verifier = verifier

    def _factory(self) -> SMTP:
        verifier = self.verifier

        class _Bound(OAuthSMTP):
            pass

        _Bound.verifier = verifier
        with warnings.catch_warnings():
            # Plain SMTP with AUTH is what a local test server does.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return self._make(_Bound)

    def _make(self, cls: type[OAuthSMTP]) -> SMTP:
        return cls(
            self.handler,
            hostname="stagger-oauth-sink",
            decode_data=False,
            enable_SMTPUTF8=True,
            auth_required=True,
            auth_require_tls=False,
            auth_exclude_mechanism=["PLAIN", "LOGIN"],
            data_size_limit=self.settings.max_message_bytes,
            timeout=60,
        )


@pytest.fixture
def oauth_smtp(auth_server: AuthServer) -> Iterator[Any]:
    """Start OAuth-only sinks: `oauth_smtp()` → (SmtpServer, TokenVerifier)."""
    started: list[SinkServer] = []

    def start(**options: Any) -> tuple[SmtpServer, TokenVerifier]:
        verifier = TokenVerifier(auth_server.jwks_url, auth_server.introspection_url)
        server = OAuthSinkServer(SinkSettings(port=free_port(), **options), verifier)
        server.start_in_thread()
        started.append(server)
        return SmtpServer(server), verifier

    yield start
    for server in started:
        server.stop_thread()
