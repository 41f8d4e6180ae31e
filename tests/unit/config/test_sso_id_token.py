"""ID token checks of the relying party: signature, issuer, audience, expiry and nonce.

The issuer's key set is placed in the client's cache, so no provider is contacted; a token
signed by a key the set does not hold makes the client fetch the set again, which fails
here (nothing listens), and the token is refused either way.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.fernet import Fernet
from joserfc import jwt
from joserfc.jwk import RSAKey

from services.config.sso.client import OidcClient, SsoError
from shared.domain.oidc import provider_settings
from shared.secrets import SecretBox

ISSUER = "http://127.0.0.1:9"
META = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks", "token_endpoint": f"{ISSUER}/token"}
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
PROVIDER = provider_settings(
    "smiles", preset="generic", client_id="stagger", sealed_secret="enc:v1:x",
    discovery_url=ISSUER,
)  # fmt: skip


def client() -> OidcClient:
    made = OidcClient(SecretBox([Fernet.generate_key()]), None, timeout=1)
    made._keys[META["jwks_uri"]] = (time.monotonic(), {"keys": [KEY.as_dict(private=False)]})
    return made


def token(key: RSAKey = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": "stagger",
        "sub": "u1",
        "iat": now,
        "exp": now + 300,
        "nonce": "n1",
        "email": "ann@smiles.example",
        "email_verified": True,
        **claims,
    }
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


async def test_a_valid_token_gives_its_claims() -> None:
    claims = await client().validate(PROVIDER, META, token(), "n1", {})
    assert claims["email"] == "ann@smiles.example"


@pytest.mark.parametrize(
    "claims",
    [
        {"nonce": "another sign-in"},
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"exp": int(time.time()) - 3600},
    ],
)
async def test_a_token_for_another_sign_in_client_issuer_or_time_is_refused(
    claims: dict[str, Any],
) -> None:
    with pytest.raises(SsoError):
        await client().validate(PROVIDER, META, token(**claims), "n1", {})


async def test_a_token_signed_by_another_key_is_refused() -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k2"}, private=True)
    with pytest.raises(SsoError):
        await client().validate(PROVIDER, META, token(stranger), "n1", {})
    forged_kid = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    with pytest.raises(SsoError):
        await client().validate(PROVIDER, META, token(forged_kid), "n1", {})


async def test_an_unsigned_token_is_refused() -> None:
    header = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    body = token().split(".")[1]
    with pytest.raises(SsoError):
        await client().validate(PROVIDER, {**META}, f"{header}.{body}.", "n1", {})
