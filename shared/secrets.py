"""Sealing secrets (SMTP/IMAP passwords, provider tokens) before they enter an event.

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`. `STAGGER_SECRET_KEY` holds one or more
keys, comma-separated: the first seals, every one of them opens, so a key can be rotated by
putting the new key first and keeping the old one until nothing sealed with it remains (old
events stay readable). Without the variable, the embedded default keeps a key file in the var
dir, created on first start with mode 0600.

A sealed value reads `enc:v1:<fernet token>`. Opening a value registers the plaintext with the
log scrubber, so even an accidental log line cannot carry it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.config import StaggerConfig
from shared.logs import register_secret

PREFIX = "enc:v1:"
KEY_FILE = "secret.key"
REDACTED = "********"


class SecretKeyError(RuntimeError):
    """No usable key, or a sealed value that no configured key opens."""


class SecretBox:
    """Seals and opens secrets with the configured key ring."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key configured")
        try:
            self._fernets = [Fernet(k) for k in keys]
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(
                "STAGGER_SECRET_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated"
            ) from exc
        self._ring = MultiFernet(self._fernets)
        self._primary = keys[0]

    @classmethod
    def from_config(cls, settings: StaggerConfig) -> SecretBox:
        """Keys from `STAGGER_SECRET_KEY`, else the var dir's key file (created if missing)."""
        if settings.secret_key is not None:
            raw = settings.secret_key.get_secret_value()
            return cls([k.strip().encode() for k in raw.split(",") if k.strip()])
        return cls([load_or_create_key_file(settings.var_dir / KEY_FILE)])

    def seal(self, plaintext: str) -> str:
        """Encrypt with the primary key."""
        register_secret(plaintext)
        return PREFIX + self._fernets[0].encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        """Decrypt a sealed value with whichever configured key sealed it."""
        if not sealed.startswith(PREFIX):
            raise SecretKeyError("not a sealed value")
        try:
            plaintext = self._ring.decrypt(sealed[len(PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError(
                "a secret was sealed with a key that is not configured (was a key removed "
                "from STAGGER_SECRET_KEY too early?)"
            ) from exc
        register_secret(plaintext)
        return plaintext

    def seal_bytes(self, plaintext: bytes) -> bytes:
        """Encrypt key material with the primary key. Unlike `seal`, nothing is registered with
        the log scrubber: data keys are many and never logged."""
        return self._fernets[0].encrypt(plaintext)

    def open_bytes(self, sealed: bytes) -> bytes:
        """Decrypt what `seal_bytes` sealed, with whichever configured key sealed it."""
        try:
            return self._ring.decrypt(sealed)
        except InvalidToken as exc:
            raise SecretKeyError("sealed with a key that is not configured") from exc

    def derive_key(self, purpose: str) -> bytes:
        """A key for `purpose` derived from the primary key (HMAC-SHA256). It changes when the
        primary key is rotated: whatever must outlive a rotation is stored sealed instead (the
        tag key is derived once, then kept, `shared/privacy/tag_key.py`)."""
        return hmac.new(self._primary, purpose.encode(), hashlib.sha256).digest()

    def reseal(self, sealed: str) -> str:
        """Re-encrypt under the primary key (key rotation)."""
        if not sealed.startswith(PREFIX):
            raise SecretKeyError("not a sealed value")
        try:
            return PREFIX + self._ring.rotate(sealed[len(PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError("a secret was sealed with a key that is not configured") from exc

    def reseal_bytes(self, sealed: bytes) -> bytes:
        """Re-encrypt what `seal_bytes` sealed under the primary key (key rotation)."""
        try:
            return self._ring.rotate(sealed)
        except InvalidToken as exc:
            raise SecretKeyError("sealed with a key that is not configured") from exc

    def bytes_under_primary(self, sealed: bytes) -> bool:
        """True if the primary key opens what `seal_bytes` sealed (nothing to re-seal)."""
        try:
            self._fernets[0].decrypt(sealed)
        except InvalidToken:
            return False
        return True

    def under_primary(self, sealed: str) -> bool:
        """True if the primary key opens `sealed` (nothing to re-seal)."""
        try:
            self._fernets[0].decrypt(sealed[len(PREFIX) :].encode())
        except InvalidToken:
            return False
        return True


def is_sealed(value: object) -> bool:
    """True for a value produced by `SecretBox.seal`."""
    return isinstance(value, str) and value.startswith(PREFIX)


def generate_key() -> str:
    """A new Fernet key, for operators setting STAGGER_SECRET_KEY."""
    return Fernet.generate_key().decode()


def load_or_create_key_file(path: Path) -> bytes:
    """Read the key file, creating it atomically (O_EXCL, 0600) if it does not exist.

    Several services start together in the embedded default; exactly one creates the file and
    the others read what it wrote.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = Fernet.generate_key()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic: fails if another process won
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    key = path.read_bytes().strip()
    if not key:
        raise SecretKeyError(f"{path} is empty")
    return key
