"""A site's sign-in settings with their secrets opened, ready for a token grant.

Opening happens once per settings version (the adapter caches it); the plaintext lives only in
this object (`repr` hides it) and `SecretBox.open` has registered it with the log scrubber.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from shared.domain.email_sign_in import GOOGLE_TOKEN_URL, EmailSignIn
from shared.secrets import SecretBox


class CredentialError(ValueError):
    """The sign-in settings are incomplete or unusable; `field` names the setting to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class OAuthCredentials:
    """Everything one token grant needs (secrets opened)."""

    account: str
    method: str
    token_url: str
    scope: str
    user: str
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    key_id: str | None = None
    thumbprint: str | None = None
    issuer: str | None = None
    refresh_token: str | None = field(default=None, repr=False)
    sealed_refresh_token: str | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        """Changes with any setting or secret (connections and cached tokens follow it). Not
        the account: a site's SMTP and IMAP accounts share one token (and one refresh chain)."""
        raw = "\x1f".join(
            str(v)
            for v in (
                self.method,
                self.token_url,
                self.scope,
                self.user,
                self.client_id,
                self.client_secret,
                self.private_key,
                self.key_id,
                self.issuer,
                self.refresh_token,
            )
        )
        return hashlib.sha256(raw.encode()).hexdigest()


_PEM_BLOCK = re.compile(r"(-----BEGIN [A-Z ]+-----)(.*?)(-----END [A-Z ]+-----)", re.S)


def normalise_pem(pem: str) -> str:
    """A PEM whose line breaks were lost (pasted into a one-line password field) made whole:
    each block's base64 body re-wrapped at 64 characters."""

    def block(m: re.Match[str]) -> str:
        body = "".join(m.group(2).split())
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "\n".join([m.group(1), *lines, m.group(3)])

    return "\n".join(block(m) for m in _PEM_BLOCK.finditer(pem)) + "\n"


def _certificate(pem: str) -> tuple[str, str]:
    """(private key PEM, base64url SHA-1 thumbprint) from a PEM holding a certificate and key."""
    data = normalise_pem(pem).encode()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(
            "email.sign_in.certificate", "no unencrypted private key in the PEM"
        ) from exc
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CredentialError("email.sign_in.certificate", "no certificate in the PEM") from exc
    digest = cert.fingerprint(hashes.SHA1())  # Entra ID names a certificate by SHA-1 (x5t)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def open_credentials(
    account: str, sign_in: EmailSignIn, default_user: str, box: SecretBox, *, graph: bool = False
) -> OAuthCredentials:
    """Open the sealed secrets and derive endpoint, scope and SASL user.

    Raises CredentialError (naming the field) or SecretKeyError.
    """
    gaps = sign_in.missing()
    if gaps:
        path, message = next(iter(gaps.items()))
        raise CredentialError(path, message)
    user = sign_in.user or default_user
    scope = sign_in.scopes(graph=graph)
    if sign_in.method == "google_workspace":
        assert sign_in.service_account_key is not None
        try:
            key = json.loads(box.open(sign_in.service_account_key))
            email, private_key = str(key["client_email"]), str(key["private_key"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CredentialError(
                "email.sign_in.service_account_key",
                "not a service account JSON key (client_email, private_key)",
            ) from exc
        return OAuthCredentials(
            account=account,
            method=sign_in.method,
            token_url=sign_in.token_url or str(key.get("token_uri") or GOOGLE_TOKEN_URL),
            scope=scope,
            user=user,
            client_id=str(key.get("client_id") or "") or None,
            private_key=private_key,
            key_id=str(key.get("private_key_id") or "") or None,
            issuer=email,
        )
    token_url = sign_in.endpoint()
    assert token_url is not None  # missing() made sure
    if sign_in.method == "microsoft_365":
        key_pem: str | None = None
        thumbprint: str | None = None
        if sign_in.certificate:
            key_pem, thumbprint = _certificate(box.open(sign_in.certificate))
        return OAuthCredentials(
            account=account,
            method=sign_in.method,
            token_url=token_url,
            scope=scope,
            user=user,
            client_id=sign_in.client_id,
            client_secret=box.open(sign_in.client_secret) if sign_in.client_secret else None,
            private_key=key_pem,
            thumbprint=thumbprint,
        )
    assert sign_in.refresh_token is not None
    return OAuthCredentials(
        account=account,
        method=sign_in.method,
        token_url=token_url,
        scope=scope,
        user=user,
        client_id=sign_in.client_id,
        client_secret=box.open(sign_in.client_secret) if sign_in.client_secret else None,
        refresh_token=box.open(sign_in.refresh_token),
        sealed_refresh_token=sign_in.refresh_token,
    )
