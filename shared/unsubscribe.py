"""Unsubscribe tokens: who asked to stop, carried in the link without showing the address.

A token names one (group, address) pair. It is `tag ‖ AES-256-CTR(address data)` in base64url,
where `tag` = HMAC-SHA256(group and address)[:16] is also the counter block ("HMAC-SIV"):

- the HMAC authenticates the pair, so nobody can unsubscribe an address they did not get a
  link for, and the link needs no login or cookie (RFC 8058, Spam Act s18);
- the address is encrypted, so it does not appear in URLs, logs or link scanners;
- it is deterministic: every message to the same person from the same group carries the same
  link, and the link works for as long as the key does.

Keys are derived (HKDF) from Stagger's secret key ring (`STAGGER_SECRET_KEY` or the var dir's
key file): the first key makes tokens, every key of the ring checks them, so rotating the
secret key keeps old links working while the old key stays in the ring.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.config import StaggerConfig
from shared.secrets import KEY_FILE, load_or_create_key_file

_INFO = b"stagger/unsubscribe/v1"
_SEP = "\x1f"


@dataclass(frozen=True)
class Unsubscriber:
    """Whom a valid token names."""

    group_id: str
    address: str


def _keys(secret: bytes) -> tuple[bytes, bytes]:
    material = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_INFO).derive(secret)
    return material[:32], material[32:]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UnsubscribeTokens:
    """Makes and checks unsubscribe tokens with keys derived from the secret key ring."""

    def __init__(self, secrets: list[bytes]) -> None:
        if not secrets:
            raise ValueError("no secret key to derive unsubscribe keys from")
        self._keys = [_keys(s) for s in secrets]

    @classmethod
    def from_config(cls, settings: StaggerConfig) -> UnsubscribeTokens:
        """Keys from `STAGGER_SECRET_KEY` (every key of the ring), else the key file."""
        if settings.secret_key is not None:
            raw = settings.secret_key.get_secret_value()
            return cls([k.strip().encode() for k in raw.split(",") if k.strip()])
        return cls([load_or_create_key_file(settings.var_dir / KEY_FILE)])

    @staticmethod
    def _plain(group_id: str, address: str) -> bytes:
        return f"{group_id}{_SEP}{address.strip()}".encode()

    def make(self, group_id: str, address: str) -> str:
        """The token for one recipient of one group."""
        mac_key, enc_key = self._keys[0]
        plain = self._plain(group_id, address)
        tag = hmac.new(mac_key, plain, hashlib.sha256).digest()[:16]
        encryptor = Cipher(algorithms.AES(enc_key), modes.CTR(tag)).encryptor()
        return _b64(tag + encryptor.update(plain) + encryptor.finalize())

    def check(self, token: str) -> Unsubscriber | None:
        """Whom the token names, or None if no key of the ring made it."""
        try:
            raw = _unb64(token)
        except (ValueError, TypeError):
            return None
        if len(raw) < 17 or len(raw) > 1024:
            return None
        tag, cipher = raw[:16], raw[16:]
        for mac_key, enc_key in self._keys:
            decryptor = Cipher(algorithms.AES(enc_key), modes.CTR(tag)).decryptor()
            plain = decryptor.update(cipher) + decryptor.finalize()
            expected = hmac.new(mac_key, plain, hashlib.sha256).digest()[:16]
            if hmac.compare_digest(expected, tag):
                group_id, _, address = plain.decode("utf-8", "replace").partition(_SEP)
                if group_id and address:
                    return Unsubscriber(group_id, address)
        return None

    def url(self, public_url: str, group_id: str, address: str) -> str:
        """The link for List-Unsubscribe and for the message body."""
        return f"{public_url.rstrip('/')}/u/{self.make(group_id, address)}"
