"""SMS sender IDs: alphanumeric tags, phone numbers and short codes, with regional caveats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from shared.domain.phone import InvalidPhoneNumber, normalise_phone
from shared.domain.regions import Region

# Twilio's rule: A-Z, a-z, 0-9, space, - + _ &, at most 11 characters, at least one letter.
_ALPHA = re.compile(r"[A-Za-z0-9 \-+_&]{1,11}")
_SHORT_CODE = re.compile(r"[0-9]{3,6}")

SenderKind = Literal["alpha", "number", "short_code"]


class InvalidSenderId(ValueError):
    """The text cannot be used as a sender; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SenderId:
    """A validated sender: an alphanumeric tag, an E.164 number or a 3-6 digit short code."""

    kind: SenderKind
    value: str

    @property
    def can_receive_replies(self) -> bool:
        """Alphanumeric senders cannot be replied to; numbers and short codes can."""
        return self.kind != "alpha"


def parse_sender_id(text: str) -> SenderId:
    """Validate `text` as a sender ID, or raise InvalidSenderId.

    "+..." is read as an E.164 number, 3-6 digits as a short code, anything else as an
    alphanumeric tag.
    """
    value = text.strip()
    if not value:
        raise InvalidSenderId("the sender is empty")
    if value.startswith("+"):
        try:
            return SenderId("number", normalise_phone(value))
        except InvalidPhoneNumber as exc:
            raise InvalidSenderId(f"not a valid phone number: {exc.reason}") from exc
    if value.isdigit():
        if _SHORT_CODE.fullmatch(value):
            return SenderId("short_code", value)
        raise InvalidSenderId(
            "a digits-only sender is a 3-6 digit short code or a number written with +"
        )
    if len(value) > 11:
        raise InvalidSenderId("an alphanumeric sender has at most 11 characters")
    if not _ALPHA.fullmatch(value):
        raise InvalidSenderId("an alphanumeric sender uses only A-Z, a-z, 0-9, space, - + _ &")
    if not any(ch.isalpha() for ch in value):
        raise InvalidSenderId("an alphanumeric sender needs at least one letter")
    return SenderId("alpha", value)


def sender_warnings(sender: SenderId, region: Region) -> list[str]:
    """Caveats for sending from `sender` to recipients in `region`."""
    warnings: list[str] = []
    if not sender.can_receive_replies:
        warnings.append(
            "Patients cannot reply to an alphanumeric sender: no confirmations, no STOP by "
            "reply. Use a number for two-way SMS and give another way to opt out."
        )
    if region == "NZ" and sender.kind != "short_code":
        warnings.append(
            "New Zealand requires application-to-person SMS to come from a short code approved "
            "by the networks; other senders, including 021/022/027 mobile numbers, are blocked."
        )
    if region == "AU" and sender.kind == "alpha":
        warnings.append(
            "From 1 July 2026 Australia delivers only alphanumeric sender IDs registered on the "
            "ACMA SMS Sender ID Register (matching the business name or trademark); others "
            "arrive in an 'Unverified' thread."
        )
    if region == "US":
        if sender.kind == "alpha":
            warnings.append(
                "US and Canadian carriers replace alphanumeric sender IDs with a local number."
            )
        else:
            warnings.append(
                "US carriers require business numbers to be registered (10DLC or toll-free)."
            )
    return warnings
