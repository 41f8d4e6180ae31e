"""How an email account signs in: a password, or OAuth 2.0 (issue 19).

Pure: the settings model, the provider presets and the rules for what each method needs. The
secrets (client secret, certificate with its private key, service-account key, refresh token)
appear here only sealed (`enc:…`); `shared.email_auth` opens them when a token is needed.

- `password`: SASL PLAIN/LOGIN with `email.smtp.password` / `email.imap.password`.
- `microsoft_365`: client credentials (a secret, or a certificate's signed assertion); needs
  the tenant id, the client id and the secret or certificate.
- `google_workspace`: JWT bearer grant of a service account with domain-wide delegation;
  needs the service account's JSON key.
- `refresh_token`: refresh grant (rotated when the server rotates it); needs the token URL,
  the client id and the refresh token.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SEALED_PREFIX = "enc:"
SignInMethod = Literal["password", "microsoft_365", "google_workspace", "refresh_token"]
OAUTH_METHODS: tuple[str, ...] = ("microsoft_365", "google_workspace", "refresh_token")

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
MICROSOFT_SMTP_IMAP_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GRAPH_URL = "https://graph.microsoft.com/v1.0"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"

SECRET_FIELDS = ("client_secret", "certificate", "service_account_key", "refresh_token")
"""Fields of `EmailSignIn` that hold sealed secrets (under `email.sign_in.`)."""

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
_URL = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")


def _sealed(value: str | None) -> str | None:
    if value is not None and not value.startswith(SEALED_PREFIX):
        raise ValueError("secrets are stored encrypted; a plaintext value reached the model")
    return value


class EmailSignIn(BaseModel):
    """The wizard's "Sign-in method" on the Account details screen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    method: SignInMethod = Field(
        default="password",
        description="password; microsoft_365 (client credentials); google_workspace (service "
        "account, domain-wide delegation); refresh_token (an admin consented once).",
    )
    tenant_id: str | None = Field(
        default=None, max_length=253, description="Microsoft Entra tenant id or domain."
    )
    client_id: str | None = Field(
        default=None, max_length=255, description="Application (client) id of the app."
    )
    client_secret: str | None = Field(default=None, description="Sealed client secret.")
    certificate: str | None = Field(
        default=None,
        description="Sealed PEM: the app's certificate and its private key (Microsoft 365, "
        "instead of a client secret).",
    )
    service_account_key: str | None = Field(
        default=None, description="Sealed JSON key of the Google service account."
    )
    refresh_token: str | None = Field(default=None, description="Sealed refresh token.")
    token_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Token endpoint. Unset: Microsoft's for the tenant, Google's, or (refresh "
        "token) required.",
    )
    scope: str | None = Field(
        default=None,
        max_length=2000,
        description="Scope asked for. Unset: the provider's mail scope.",
    )
    user: str | None = Field(
        default=None,
        max_length=320,
        description="Mailbox the token is used for (SASL user). Unset: the SMTP username, "
        "else the practice address.",
    )
    graph_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Microsoft Graph base URL for the Graph transport. Unset: "
        "https://graph.microsoft.com/v1.0 (a national cloud has its own).",
    )

    _sealed = field_validator(*SECRET_FIELDS)(_sealed)

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not _TENANT.match(value):
            raise ValueError("not a tenant id (a GUID or a domain such as contoso.com)")
        return value

    @field_validator("token_url", "graph_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not _URL.match(value):
            raise ValueError("not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> EmailSignIn:
        if self.method == "microsoft_365" and self.client_secret and self.certificate:
            raise ValueError("give a client secret or a certificate, not both")
        return self

    @property
    def is_oauth(self) -> bool:
        """True for the OAuth 2.0 methods."""
        return self.method in OAUTH_METHODS

    def missing(self) -> dict[str, str]:
        """Fields the method needs but lacks ({dotted path: message}); empty when complete."""
        gaps: dict[str, str] = {}

        def need(name: str, what: str) -> None:
            if not getattr(self, name):
                gaps[f"email.sign_in.{name}"] = f"{what} is required for {self.method}"

        if self.method == "microsoft_365":
            need("tenant_id", "the tenant id")
            need("client_id", "the application (client) id")
            if not self.client_secret and not self.certificate:
                gaps["email.sign_in.client_secret"] = (
                    "a client secret or a certificate is required for microsoft_365"
                )
        elif self.method == "google_workspace":
            need("service_account_key", "the service account's JSON key")
        elif self.method == "refresh_token":
            need("token_url", "the token URL")
            need("client_id", "the client id")
            need("refresh_token", "the refresh token")
        return gaps

    def endpoint(self) -> str | None:
        """The token endpoint (None: Google's comes from the service account key)."""
        if self.token_url:
            return self.token_url
        if self.method == "microsoft_365" and self.tenant_id:
            return MICROSOFT_TOKEN_URL.format(tenant=self.tenant_id)
        return None

    def scopes(self, graph: bool = False) -> str:
        """The scope to ask for (Microsoft: SMTP/IMAP or Graph)."""
        if self.scope:
            return self.scope
        if self.method == "microsoft_365":
            return MICROSOFT_GRAPH_SCOPE if graph else MICROSOFT_SMTP_IMAP_SCOPE
        if self.method == "google_workspace":
            return GOOGLE_MAIL_SCOPE
        return ""


PRESETS: dict[str, dict[str, object]] = {
    # What the wizard fills in when a provider is chosen (hosts, ports, security, limits).
    "microsoft_365": {
        "email.provider_preset": "microsoft_365",
        "email.smtp.host": "smtp.office365.com",
        "email.smtp.port": 587,
        "email.smtp.security": "starttls",
        "email.imap.host": "outlook.office365.com",
        "email.imap.port": 993,
        "email.imap.security": "tls",
        "email.imap.sent_folder": "Sent Items",
        "email.sign_in.method": "microsoft_365",
    },
    "google_workspace": {
        "email.provider_preset": "google_workspace",
        "email.smtp.host": "smtp.gmail.com",
        "email.smtp.port": 587,
        "email.smtp.security": "starttls",
        "email.imap.host": "imap.gmail.com",
        "email.imap.port": 993,
        "email.imap.security": "tls",
        "email.imap.sent_folder": "[Gmail]/Sent Mail",
        "email.sign_in.method": "google_workspace",
    },
}
