"""A real OAuth 2.0 authorization server for tests, on 127.0.0.1 in a thread.

It speaks the three grants Stagger uses, the way Microsoft Entra ID and Google do:

- `POST /{tenant}/oauth2/v2.0/token`, `grant_type=client_credentials`, with a client secret
  (`client_secret_post`) or a certificate's signed assertion (`private_key_jwt`, the
  certificate named by its SHA-1 thumbprint in the `x5t` header);
- `POST /token`, `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, a service account's
  assertion (iss = its email, sub = the mailbox, scope claim);
- `POST /token`, `grant_type=refresh_token`, rotating the refresh token on every use (a used
  one is refused with `invalid_grant`).

Access tokens are JWTs signed with the server's RSA key, published at `GET /jwks`;
`POST /introspect` (RFC 7662, what dovecot's oauth2 passdb calls) says whether a token is
active. A client can be revoked (`revoke`): its grants are refused with an Entra-style reason
and its tokens stop being active.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def certificate_pem(common_name: str = "stagger-test-app") -> tuple[str, str]:
    """(PEM with a self-signed certificate and its RSA key, the certificate's x5t)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    x5t = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
    return pem.decode(), x5t


@dataclass
class Client:
    """A registered application (or service account) and the mailbox it may use."""

    client_id: str
    mailbox: str
    secret: str | None = None
    public_key: RSAKey | None = None
    x5t: str | None = None
    email: str | None = None
    revoked: bool = False


@dataclass
class AuthServer:
    """The server's state; tests change it while it runs."""

    lifetime: float = 3600.0
    rotate: bool = True
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "k1"}))
    clients: dict[str, Client] = field(default_factory=dict)
    refresh_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    grants: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    introspections: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token_url(self, tenant: str = "contoso.test") -> str:
        """Microsoft-style tenant token endpoint."""
        return f"{self.url}/{tenant}/oauth2/v2.0/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    @property
    def introspection_url(self) -> str:
        return f"{self.url}/introspect"

    # --- registration ------------------------------------------------------------------

    def add_client(
        self, mailbox: str, *, secret: str | None = None, certificate: str | None = None
    ) -> Client:
        """A Microsoft-style app registration (secret or certificate PEM)."""
        client = Client(client_id=str(uuid.uuid4()), mailbox=mailbox, secret=secret)
        if certificate is not None:
            cert = x509.load_pem_x509_certificate(certificate.encode())
            pub = cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            client.public_key = RSAKey.import_key(pub)
            client.x5t = (
                base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
            )
        with self.lock:
            self.clients[client.client_id] = client
        return client

    def add_service_account(self, mailbox: str) -> tuple[Client, dict[str, str]]:
        """A Google-style service account delegated to `mailbox`; returns its JSON key."""
        key = RSAKey.generate_key(2048)
        client_id = str(uuid.uuid4().int)[:21]
        email = f"stagger-{client_id[:6]}@project.iam.example.test"
        client = Client(
            client_id=client_id,
            mailbox=mailbox,
            public_key=RSAKey.import_key(key.as_pem(private=False)),
            email=email,
        )
        key_id = uuid.uuid4().hex
        with self.lock:
            self.clients[email] = client
        return client, {
            "type": "service_account",
            "project_id": "stagger-test",
            "private_key_id": key_id,
            "private_key": key.as_pem(private=True).decode(),
            "client_email": email,
            "client_id": client_id,
            "token_uri": f"{self.url}/token",
        }

    def add_refresh_client(self, mailbox: str, secret: str | None = None) -> tuple[Client, str]:
        """A client an admin consented to once; returns it and its first refresh token."""
        client = self.add_client(mailbox, secret=secret)
        return client, self.new_refresh_token(client)

    def new_refresh_token(self, client: Client) -> str:
        token = f"rt-{uuid.uuid4().hex}"
        with self.lock:
            self.refresh_tokens[token] = (client.client_id, client.mailbox)
        return token

    def revoke(self, client: Client, revoked: bool = True) -> None:
        """Disable (or re-enable) a client: grants refused, its tokens inactive."""
        with self.lock:
            client.revoked = revoked

    # --- tokens -------------------------------------------------------------------------

    def issue(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": client.mailbox,
            "azp": client.client_id,
            "iat": now,
            "exp": now + int(self.lifetime),
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(self.lifetime)}

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of an active token signed by this server, else None."""
        try:
            decoded = jwt.decode(token, KeySet([self.key]), algorithms=["RS256"])
            jwt.JWTClaimsRegistry(exp={"essential": True}).validate(decoded.claims)
        except (JoseError, ValueError):
            return None
        client = self.clients.get(str(decoded.claims.get("azp")))
        if client is None:
            client = next(
                (c for c in self.clients.values() if c.client_id == decoded.claims.get("azp")),
                None,
            )
        if client is None or client.revoked:
            return None
        return dict(decoded.claims)

    def grant(self, form: dict[str, str], path: str) -> tuple[int, dict[str, Any]]:
        """Answer one token request: (status, JSON body)."""
        kind = form.get("grant_type", "")
        with self.lock:
            if kind == "client_credentials":
                status, body = self._client_credentials(form, path)
            elif kind == JWT_BEARER:
                status, body = self._jwt_bearer(form)
            elif kind == "refresh_token":
                status, body = self._refresh(form)
            else:
                status, body = 400, _error("unsupported_grant_type", kind)
            (self.grants if status == 200 else self.refused)[kind] += 1
        return status, body

    def _client_credentials(self, form: dict[str, str], path: str) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id", "")
        assertion = form.get("client_assertion")
        if assertion is not None:
            try:
                header = json.loads(base64.urlsafe_b64decode(assertion.split(".")[0] + "=="))
            except ValueError:
                return 400, _error("invalid_client", "AADSTS50027: malformed assertion")
            client = next(
                (c for c in self.clients.values() if c.x5t and c.x5t == header.get("x5t")),
                None,
            )
            if client is None or client.public_key is None:
                return 401, _error(
                    "invalid_client", "AADSTS700027: certificate not registered for the app"
                )
            try:
                claims = jwt.decode(assertion, client.public_key, algorithms=["RS256"]).claims
                jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
            except (JoseError, ValueError):
                return 401, _error("invalid_client", "AADSTS700027: assertion signature invalid")
            if claims.get("sub") != client.client_id or claims.get("aud") != self.url + path:
                return 401, _error("invalid_client", "AADSTS700027: wrong subject or audience")
        else:
            found = self.clients.get(client_id)
            if found is None:
                return 400, _error(
                    "unauthorized_client", f"AADSTS700016: application {client_id} not found"
                )
            client = found
            if client.secret is None or form.get("client_secret") != client.secret:
                return 401, _error(
                    "invalid_client", "AADSTS7000215: Invalid client secret provided"
                )
        if client.revoked:
            return 400, _error(
                "unauthorized_client",
                "AADSTS7000112: Application is disabled (consent revoked by the administrator)",
            )
        return 200, self.issue(client)

    def _jwt_bearer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        assertion = form.get("assertion", "")
        try:
            unverified = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
        except (ValueError, IndexError):
            return 400, _error("invalid_grant", "Invalid JWT")
        client = self.clients.get(str(unverified.get("iss")))
        if client is None or client.public_key is None:
            return 400, _error("invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(assertion, client.public_key, algorithms=["RS256"]).claims
            jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
        except (JoseError, ValueError):
            return 400, _error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") != f"{self.url}/token":
            return 400, _error("invalid_grant", "Invalid JWT: audience")
        if client.revoked or claims.get("sub") != client.mailbox:
            return 401, _error(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client "
                "not authorized for any of the scopes requested.",
            )
        if "https://mail.google.com/" not in str(claims.get("scope", "")).split():
            return 400, _error("invalid_scope", "scope missing")
        return 200, self.issue(client)

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        presented = form.get("refresh_token", "")
        owner = self.refresh_tokens.get(presented)
        if owner is None:
            return 400, _error("invalid_grant", "Token has been expired or revoked.")
        client = self.clients[owner[0]]
        if form.get("client_id") != client.client_id or (
            client.secret is not None and form.get("client_secret") != client.secret
        ):
            return 401, _error("invalid_client", "The OAuth client was not found.")
        if client.revoked:
            return 400, _error("invalid_grant", "Token has been expired or revoked.")
        body = self.issue(client)
        if self.rotate:
            del self.refresh_tokens[presented]
            fresh = f"rt-{uuid.uuid4().hex}"
            self.refresh_tokens[fresh] = owner
            body["refresh_token"] = fresh
        return 200, body

    def introspect(self, token: str) -> dict[str, Any]:
        with self.lock:
            self.introspections += 1
            claims = self.verify(token)
        if claims is None:
            return {"active": False}
        return {"active": True, "username": claims["sub"], "exp": claims["exp"]}


def _error(code: str, description: str) -> dict[str, Any]:
    return {"error": code, "error_description": description}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        return dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))

    def do_GET(self) -> None:
        if self.path == "/jwks":
            self._answer(200, KeySet([self.server.state.key]).as_dict(private=False))
        else:
            self._answer(404, {"error": "not_found"})

    def do_POST(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        if path == "/introspect":
            form = self._form()
            token = form.get("token", "")
            auth = self.headers.get("Authorization", "")
            if not token and auth.lower().startswith("bearer "):
                token = auth[7:].strip()
            self._answer(200, state.introspect(token))
        elif path == "/token" or path.endswith("/oauth2/v2.0/token"):
            status, body = state.grant(self._form(), path)
            self._answer(status, body)
        else:
            self._answer(404, {"error": "not_found"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: AuthServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    """A running authorization server (stopped after the test)."""
    state = AuthServer()
    server = _Server(state)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="oauth-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
