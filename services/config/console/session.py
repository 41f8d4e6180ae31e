"""The console's session cookie and CSRF tokens.

The cookie is a Fernet token (AES-128-CBC + HMAC-SHA256: signed *and* encrypted) holding the
session id, the CSRF token and whether it is signed in; who is signed in is kept on the
server (`services/config/staff/sessions.py`, keyed by a hash of the session id). Its key is
derived (HKDF) from the service's secret key(s), so it is never the key that seals settings
secrets, and rotating `STAGGER_SECRET_KEY` the usual way (new key first) keeps existing
sessions valid. Fernet tokens carry their creation time: a cookie older than the session
lifetime (`STAGGER_STAFF_SESSION_HOURS`, at least `MAX_AGE`) is refused.

The cookie is HttpOnly, SameSite=Lax (so a sign-in provider's redirect back still carries it;
every form also carries a CSRF token), Path=/console and Secure when served over https.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.config import StaggerConfig
from shared.secrets import KEY_FILE, load_or_create_key_file

COOKIE = "stagger_console"
COOKIE_PATH = "/console"
MAX_AGE = 12 * 3600
CSRF_FIELD = "csrf_token"


def _derive(key: bytes, purpose: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
    return base64.urlsafe_b64encode(hkdf.derive(key))


def service_keys(settings: StaggerConfig) -> list[bytes]:
    """The service's secret keys, exactly as `SecretBox.from_config` finds them."""
    if settings.secret_key is not None:
        raw = settings.secret_key.get_secret_value()
        return [k.strip().encode() for k in raw.split(",") if k.strip()]
    return [load_or_create_key_file(settings.var_dir / KEY_FILE)]


@dataclass
class Session:
    """One browser's session: anonymous until someone signs in."""

    sid: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    signed_in: bool = False
    dirty: bool = True

    def csrf_ok(self, presented: str | None) -> bool:
        """True if a form carried this session's CSRF token."""
        return bool(presented) and hmac.compare_digest(self.csrf, str(presented))

    def rotate(self, signed_in: bool) -> None:
        """New id and CSRF token (on sign-in and sign-out: no session fixation)."""
        self.sid = secrets.token_urlsafe(32)
        self.csrf = secrets.token_urlsafe(24)
        self.signed_in = signed_in
        self.dirty = True


class SessionCodec:
    """Seals sessions into cookie values and opens them again."""

    def __init__(
        self,
        keys: list[bytes],
        purpose: bytes = b"stagger/console/session/v1",
        max_age: int = MAX_AGE,
    ) -> None:
        self.max_age = max_age
        self._fernets = [Fernet(_derive(k, purpose)) for k in keys]
        self._ring = MultiFernet(self._fernets)

    @classmethod
    def from_config(cls, settings: StaggerConfig) -> SessionCodec:
        """Keys derived from `STAGGER_SECRET_KEY` or the var dir's key file."""
        # The server-side session decides when a sign-in ends; the cookie must not end first.
        hours = int(settings.staff_session_hours * 3600)
        return cls(service_keys(settings), max_age=max(MAX_AGE, hours))

    def dump(self, session: Session) -> str:
        """The cookie value."""
        payload = {"s": session.sid, "c": session.csrf, "u": session.signed_in}
        return self._fernets[0].encrypt(json.dumps(payload).encode()).decode()

    def load(self, value: str | None) -> Session | None:
        """The session in a cookie, or None if it is missing, forged or expired."""
        if not value:
            return None
        try:
            raw = self._ring.decrypt(value.encode(), ttl=self.max_age)
            payload = json.loads(raw)
            return Session(
                sid=str(payload["s"]),
                csrf=str(payload["c"]),
                signed_in=payload.get("u") is True,
                dirty=False,
            )
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None

    def seal(self, text: str) -> str:
        """Encrypt a value kept server-side for a while (secrets typed into a wizard draft)."""
        return self._fernets[0].encrypt(text.encode()).decode()

    def open(self, sealed: str) -> str:
        """Decrypt what `seal` produced."""
        return self._ring.decrypt(sealed.encode()).decode()
