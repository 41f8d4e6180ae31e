"""Every provider's webhook parsers: what each documents is understood, and a body missing
what it needs is refused naming the field (then dead-lettered, nothing stored)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.sms_gateway.adapters.providers import (
    clicksend,
    esendex,
    kudosity,
    messagemedia,
    tnz,
    vonage,
)
from services.sms_gateway.adapters.providers.base import BadWebhook, Receipt
from services.sms_gateway.adapters.providers.catalogue import BUILDERS, PATH_SECURED

Parser = Callable[[Mapping[str, Any], str], object]

RECEIPTS: list[tuple[Parser, dict[str, Any], bool | None, str]] = [
    (
        clicksend.parse_receipt,
        {"message_id": "m", "status_code": "201", "custom_string": "r"},
        True,
        "message_id",
    ),
    (
        vonage.parse_receipt,
        {"messageId": "m", "status": "failed", "client-ref": "r"},
        False,
        "messageId",
    ),
    (messagemedia.parse_receipt, {"message_id": "m", "status": "enroute"}, None, "message_id"),
    (kudosity.parse_receipt, {"message_id": "m", "status": "hard-bounce"}, False, "message_id"),
    (esendex.parse_receipt, {"_type": "MessageDelivered", "MessageId": "m"}, True, "MessageId"),
    (tnz.parse_receipt, {"MessageID": "r", "Status": "SUCCESS"}, True, "MessageID"),
]


def test_every_built_provider_has_its_webhooks_read() -> None:
    assert set(BUILDERS) == set(PATH_SECURED)


@pytest.mark.parametrize(("parse", "fields", "delivered", "needed"), RECEIPTS)
def test_receipts_are_read_and_a_missing_id_is_named(
    parse: Parser, fields: dict[str, Any], delivered: bool | None, needed: str
) -> None:
    receipt = parse(fields, "acct")
    assert isinstance(receipt, Receipt)
    assert (receipt.delivered, receipt.account_id) == (delivered, "acct")
    with pytest.raises(BadWebhook, match=needed):
        parse({k: v for k, v in fields.items() if k != needed}, "acct")


def test_tnz_replies_name_the_message_they_answer() -> None:
    reply = tnz.parse_inbound(
        {"ReceivedID": "in-1", "Destination": "+64211234567", "Message": "YES", "MessageID": "m1"},
        "acct",
    )
    assert (reply.in_reply_to, reply.to, reply.from_number) == ("m1", "", "+64211234567")


@given(st.text(max_size=200))
def test_esendex_pushes_are_xml_or_refused(text: str) -> None:
    try:
        fields = esendex.flat(text.encode())
    except BadWebhook:
        return
    assert "_type" in fields


@given(st.dictionaries(st.sampled_from(["msisdn", "text", "api-key", "to"]), st.text(max_size=30)))
def test_a_vonage_signature_covers_every_parameter(params: dict[str, str]) -> None:
    signed = params | {"timestamp": str(int(time.time()))}
    signed["sig"] = vonage.signature("secret", signed)
    assert vonage.verify(signed, "secret", 60)
    assert not vonage.verify(signed | {"extra": "x"}, "secret", 60)
