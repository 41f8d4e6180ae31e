"""Pure parts of OAuth email sign-in: SASL responses, sign-in settings, refresh timing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.domain.email_sign_in import PRESETS, EmailSignIn
from shared.domain.site_settings import SECRET_PATHS, EmailSettings, settable_paths
from shared.email_auth import sasl
from shared.email_auth.provider import AccessToken, refresh_due

SEALED = "enc:v1:abc"


def test_xoauth2_matches_the_documented_format() -> None:
    raw = sasl.xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    # Google's published example of the XOAUTH2 initial client response.
    assert sasl.encoded(raw) == (
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
        "YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )


@given(user=st.emails(), token=st.text(alphabet="abcdefXYZ0123456789-._~+/", min_size=1))
def test_oauthbearer_round_trips_user_and_token(user: str, token: str) -> None:
    raw = sasl.oauthbearer(user, token, "mail.example", 993).decode()
    header, _, rest = raw.partition("\x01")
    name = header.split(",")[1].removeprefix("a=").replace("=2C", ",").replace("=3D", "=")
    fields = dict(p.split("=", 1) for p in rest.split("\x01") if "=" in p)
    assert name == user and fields["auth"] == f"Bearer {token}" and raw.endswith("\x01\x01")


def test_mechanism_choice_prefers_xoauth2() -> None:
    assert sasl.choose({"PLAIN", "XOAUTH2", "OAUTHBEARER"}) == "XOAUTH2"
    assert sasl.choose({"OAUTHBEARER"}) == "OAUTHBEARER"
    assert sasl.choose({"PLAIN", "LOGIN"}) is None


@given(lifetime=st.floats(1, 86_400), used=st.floats(0, 1))
def test_refresh_comes_before_expiry(lifetime: float, used: float) -> None:
    token = AccessToken("t", expires_at=lifetime, lifetime=lifetime)
    now = lifetime * used
    if refresh_due(token, now):
        assert lifetime - now <= min(60, lifetime / 2)
    else:
        assert lifetime - now > 0, "a token is never used once it has run out"


def test_sign_in_refuses_plaintext_secrets_and_names_gaps() -> None:
    with pytest.raises(ValidationError, match="client_secret"):
        EmailSignIn(method="microsoft_365", client_secret="plain")
    gaps = EmailSignIn(method="microsoft_365").missing()
    assert set(gaps) == {
        "email.sign_in.tenant_id",
        "email.sign_in.client_id",
        "email.sign_in.client_secret",
    }
    assert EmailSignIn(method="refresh_token", token_url="https://t.example/token").missing()
    ok = EmailSignIn(
        method="microsoft_365", tenant_id="contoso.com", client_id="c", client_secret=SEALED
    )
    assert ok.missing() == {} and ok.endpoint() == (
        "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
    )
    assert ok.scopes() == "https://outlook.office365.com/.default"
    assert ok.scopes(graph=True) == "https://graph.microsoft.com/.default"
    with pytest.raises(ValidationError, match="not both"):
        EmailSignIn(method="microsoft_365", client_secret=SEALED, certificate=SEALED)
    with pytest.raises(ValidationError, match="tenant_id"):
        EmailSignIn(tenant_id="bad tenant/..")


def test_secrets_are_secret_paths_and_presets_are_settable() -> None:
    for name in ("client_secret", "certificate", "service_account_key", "refresh_token"):
        assert f"email.sign_in.{name}" in SECRET_PATHS
    known = settable_paths()
    for preset in PRESETS.values():
        assert set(preset) <= known
    settings = EmailSettings(provider_preset="microsoft_365")
    assert settings.hard_limits() == {"per_minute": 30, "per_day": 10000}
    assert EmailSettings(provider_preset="google_workspace").hard_limits()["per_day"] == 2000


def test_a_pem_pasted_on_one_line_is_made_whole() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        load_pem_private_key,
    )

    from shared.email_auth.credentials import normalise_pem

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    flattened = pem.replace("\n", " ")
    restored = normalise_pem(flattened)
    assert load_pem_private_key(restored.encode(), None).private_numbers() == (
        key.private_numbers()
    )
    assert normalise_pem(pem).strip() == pem.strip()
