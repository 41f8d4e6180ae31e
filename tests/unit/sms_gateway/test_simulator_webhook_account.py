"""A simulator webhook names its account (the gateway refuses one that is not the signer)."""

from __future__ import annotations

import json

import pytest

from services.sms_gateway.adapters.providers.base import BadWebhook, Inbound, Receipt
from services.sms_gateway.adapters.providers.simulator import parse

RECEIPT = {
    "type": "receipt",
    "account": "acct-a",
    "id": "sim-1",
    "reference": "m-1",
    "status": "delivered",
    "occurred_at": "2030-01-01T00:00:00+00:00",
}
INBOUND = {
    "type": "inbound",
    "account": "acct-a",
    "id": "sim-in-1",
    "from": "+61400000001",
    "to": "+61491570999",
    "body": "STOP",
    "received_at": "2030-01-01T00:00:00+00:00",
}


@pytest.mark.parametrize("payload", [RECEIPT, INBOUND])
def test_the_account_is_parsed_and_required(payload: dict[str, object]) -> None:
    parsed = parse(json.dumps(payload).encode())
    assert isinstance(parsed, Receipt | Inbound)
    assert parsed.account_id == "acct-a"
    for missing in (None, "", 5):
        with pytest.raises(BadWebhook, match="field 'account' must be a non-empty string"):
            parse(json.dumps({**payload, "account": missing}).encode())
