"""Who a group's identity provider may let in, and which provider settings are usable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.oidc import (
    OidcConfigError,
    SignInRefused,
    StaffCandidate,
    admit,
    check_url,
    identity,
    issuer_accepted,
    locate,
    provider_settings,
)

SEALED = "enc:v1:x"


def _provider(preset: str = "generic", domain: str | None = None, **kw: str):  # type: ignore[no-untyped-def]
    extra = {"discovery_url": "https://id.example.com"} if preset == "generic" else {}
    if preset == "entra":
        extra = {"tenant": "contoso.onmicrosoft.com"}
    return provider_settings(
        "smiles",
        preset=preset,
        client_id="abc",
        sealed_secret=SEALED,
        allowed_domain=domain,
        **{**extra, **kw},
    )


def test_presets_name_their_issuer_and_discovery_document() -> None:
    assert locate("google") == (
        "https://accounts.google.com",
        "https://accounts.google.com/.well-known/openid-configuration",
    )
    issuer, discovery = locate("entra", tenant="0b7c-tenant")
    assert issuer == "https://login.microsoftonline.com/0b7c-tenant/v2.0"
    assert discovery == issuer + "/.well-known/openid-configuration"
    assert locate(
        "generic", discovery_url="https://id.example.com/.well-known/openid-configuration"
    )[0] == ("https://id.example.com")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"preset": "okta"}, "preset"),
        ({"preset": "entra", "tenant": "common"}, "tenant"),
        ({"preset": "entra", "tenant": ""}, "tenant"),
        ({"preset": "generic"}, "discovery_url"),
        ({"preset": "generic", "discovery_url": "http://id.example.com"}, "discovery_url"),
        ({"preset": "generic", "discovery_url": "ftp://id.example.com"}, "discovery_url"),
        ({"preset": "google"}, "allowed_domain"),
        ({"preset": "google", "allowed_domain": "not a domain"}, "allowed_domain"),
        (
            {"preset": "google", "allowed_domain": "smiles.com", "client_id": "has space"},
            "client_id",
        ),
    ],
)
def test_unusable_settings_name_the_field(kwargs: dict[str, str], field: str) -> None:
    args = {"client_id": "abc", "sealed_secret": SEALED, **kwargs}
    with pytest.raises(OidcConfigError) as caught:
        provider_settings("smiles", **args)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_plain_http_only_on_loopback() -> None:
    assert check_url("http://127.0.0.1:4000/", "x") == "http://127.0.0.1:4000"
    assert check_url("http://localhost:4000", "x") == "http://localhost:4000"
    with pytest.raises(OidcConfigError):
        check_url("http://10.0.0.1", "x")


def test_verified_email_in_the_allowed_domain_is_the_identity() -> None:
    provider = _provider(domain="smiles.com")
    who = identity({"sub": "1", "email": " Ann@Smiles.com ", "email_verified": True}, provider)
    assert (who.email, who.subject) == ("ann@smiles.com", "1")
    assert identity({"sub": "1", "email": "a@smiles.com", "email_verified": "true"}, provider)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"sub": "1"}, "no_email"),
        ({"sub": "1", "email": "a@smiles.com"}, "email_unverified"),
        ({"sub": "1", "email": "a@smiles.com", "email_verified": False}, "email_unverified"),
        ({"sub": "1", "email": "a@other.com", "email_verified": True}, "domain"),
    ],
)
def test_unverified_or_foreign_emails_are_refused(claims: dict[str, object], reason: str) -> None:
    with pytest.raises(SignInRefused) as caught:
        identity(claims, _provider(domain="smiles.com"))
    assert caught.value.reason == reason


def test_google_requires_the_hosted_domain_claim() -> None:
    google = _provider("google", domain="smiles.com")
    ok = {"sub": "1", "email": "a@smiles.com", "email_verified": True, "hd": "smiles.com"}
    assert identity(ok, google).email == "a@smiles.com"
    with pytest.raises(SignInRefused) as caught:
        identity({**ok, "hd": None}, google)
    assert caught.value.reason == "hosted_domain"


def test_entra_vouches_with_xms_edov() -> None:
    entra = _provider("entra")
    assert identity({"sub": "1", "email": "a@contoso.com", "xms_edov": True}, entra)
    with pytest.raises(SignInRefused):
        identity({"sub": "1", "email": "a@contoso.com", "xms_edov": True}, _provider())


def test_entra_issuer_by_tenant_id_is_accepted_for_a_domain_tenant() -> None:
    entra = _provider("entra")
    assert issuer_accepted(
        entra, "https://login.microsoftonline.com/0b7c1a2e-1111-2222-3333-444455556666/v2.0"
    )
    assert not issuer_accepted(_provider(), "https://evil.example.com")
    assert issuer_accepted(_provider(), "https://id.example.com")


def test_only_invited_or_active_users_of_the_group_are_admitted() -> None:
    mine = StaffCandidate("u1", "smiles", "invited")
    assert admit("smiles", [mine]) == mine
    assert admit("smiles", [StaffCandidate("u9", "other", "active"), mine]) == mine
    for candidates, reason in [
        ([], "unknown"),
        ([StaffCandidate("u2", "other", "active")], "other_group"),
        ([StaffCandidate("u3", "smiles", "disabled")], "disabled"),
    ]:
        with pytest.raises(SignInRefused) as caught:
            admit("smiles", candidates)
        assert caught.value.reason == reason


statuses = st.sampled_from(["invited", "active", "disabled"])
groups = st.sampled_from(["smiles", "other", "third"])


@given(st.lists(st.builds(StaffCandidate, st.text(min_size=1), groups, statuses), max_size=5))
def test_admitted_user_is_always_an_enabled_user_of_the_group(
    candidates: list[StaffCandidate],
) -> None:
    of_group = [c for c in candidates if c.group_id == "smiles"]
    try:
        user = admit("smiles", candidates)
    except SignInRefused:
        assert not of_group or of_group[0].status == "disabled"
        return
    assert user.group_id == "smiles" and user.status in ("invited", "active")
