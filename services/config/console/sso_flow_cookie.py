"""The cookie that carries a single sign-on in progress from its start to the callback.

It holds the state, nonce and PKCE verifier, sealed with a Fernet key derived for this purpose
alone from the service's secret keys, so any config replica can finish a sign-in another
replica started. It lives ten minutes and is read once.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from services.config.console.session import _derive, service_keys
from services.config.sso.client import Pending
from shared.config import StaggerConfig

COOKIE = "stagger_sso"
COOKIE_PATH = "/console/sso"
MAX_AGE = 600


class FlowCodec:
    """Seals and opens `Pending` sign-ins."""

    def __init__(self, keys: list[bytes]) -> None:
        self._ring = MultiFernet([Fernet(_derive(k, b"stagger-sso-flow")) for k in keys])

    @classmethod
    def from_config(cls, settings: StaggerConfig) -> FlowCodec:
        """Keys from the service's secret key(s)."""
        return cls(service_keys(settings))

    def dump(self, pending: Pending) -> str:
        """The cookie's value."""
        return self._ring.encrypt(json.dumps(asdict(pending)).encode()).decode()

    def load(self, value: str | None) -> Pending | None:
        """The sign-in in progress, or None when absent, forged or older than MAX_AGE."""
        if not value:
            return None
        try:
            raw = json.loads(self._ring.decrypt(value.encode(), ttl=MAX_AGE))
            return Pending(**raw)
        except (InvalidToken, ValueError, TypeError):
            return None
