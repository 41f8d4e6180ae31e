"""Inbound email's personal fields, sealed on arrival and opened where staff read them.

An email from a patient names them twice over: the sender's address and display name, and what
they wrote in the subject and the attachments' names. The email gateway seals these under the
sender's keys before the message is recorded anywhere (its table, the `email_received` event):
the address with kind `id`, the rest with kind `body`, and it adds the sender's salted hash
(`sender_tag`), so erasing the patient shreds them and retention expires the day's subjects.
A bounce's `recipient` is the patient our message went to: it is sealed under that patient's
keys, and its diagnostic has addresses taken out (`redact`).

Events recorded before this change carry the values in clear; `open_fields` returns such values
as they are, so old events stay readable.
"""

from __future__ import annotations

from typing import Any

from shared.events.schemas.inbound_email import InboundEmailReceived
from shared.privacy.codec import ADDRESS, BODY, PersonalData
from shared.privacy.redact import optional

# Fields of an `email_received` event (as a dict) that may be sealed.
SEALED_FIELDS = ("sender", "sender_name", "subject")


async def seal_received(personal: PersonalData, data: InboundEmailReceived) -> InboundEmailReceived:
    """`data` with its sender, subject and attachment names sealed (under the sender's keys;
    a message with no sender under the mailbox's own, so retention still expires it)."""
    g = data.group_id
    who = data.sender or data.account
    when = data.received_at

    async def body(value: str | None) -> str | None:
        return None if not value else await personal.seal(g, who, BODY, value, when)

    attachments = [
        a.model_copy(update={"filename": await body(a.filename)}) for a in data.attachments
    ]
    bounce = data.bounce
    if bounce is not None:
        patient = bounce.recipient
        bounce = bounce.model_copy(
            update={
                "recipient": None
                if not patient
                else await personal.seal(g, patient, ADDRESS, patient),
                "diagnostic": optional(bounce.diagnostic),
            }
        )
    return data.model_copy(
        update={
            "sender": None
            if data.sender is None
            else await personal.seal(g, data.sender, ADDRESS, data.sender),
            "sender_tag": None if data.sender is None else personal.tag(g, data.sender),
            "sender_name": await body(data.sender_name),
            "subject": await body(data.subject) or "",
            "attachments": attachments,
            "bounce": bounce,
        }
    )


async def open_fields(
    personal: PersonalData, group_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """An `email_received` or `attachment_released` event's data (a dict, as the audit service
    answers) with its sealed fields opened: "erased" where the keys are gone, clear values of
    older events as they are."""
    out = dict(data)
    for name in (*SEALED_FIELDS, "filename"):
        if isinstance(out.get(name), str):
            out[name] = await personal.open(group_id, out[name])
    if out.get("attachments"):
        out["attachments"] = [
            {**a, "filename": await personal.open(group_id, a.get("filename"))}
            for a in out["attachments"]
        ]
    if isinstance(out.get("bounce"), dict):
        bounce = out["bounce"]
        out["bounce"] = {
            **bounce,
            "recipient": await personal.open(group_id, bounce.get("recipient")),
        }
    return out
