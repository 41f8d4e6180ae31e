"""The single sign-on flow cookie: opens only what it sealed, and only for ten minutes."""

from __future__ import annotations

import time
from unittest import mock

from cryptography.fernet import Fernet

from services.config.console.sso_flow_cookie import MAX_AGE, FlowCodec
from services.config.sso.client import Pending

PENDING = Pending("smiles", "state-1", "nonce-1", "verifier-1", "/console/", time.time())


def test_round_trip_and_other_keys() -> None:
    key = Fernet.generate_key()
    codec = FlowCodec([key])
    sealed = codec.dump(PENDING)
    assert "state-1" not in sealed and "verifier-1" not in sealed
    assert codec.load(sealed) == PENDING
    assert FlowCodec([Fernet.generate_key(), key]).load(sealed) == PENDING  # a rotated ring
    assert FlowCodec([Fernet.generate_key()]).load(sealed) is None
    assert codec.load(sealed[:-4] + "AAAA") is None
    assert codec.load(None) is None
    assert codec.load("") is None


def test_an_old_cookie_is_refused() -> None:
    codec = FlowCodec([Fernet.generate_key()])
    sealed = codec.dump(PENDING)
    later = time.time() + MAX_AGE + 5
    with mock.patch("time.time", return_value=later):
        assert codec.load(sealed) is None
