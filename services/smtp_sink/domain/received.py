"""What the sink keeps of one accepted message, and how it finds the message's id. Pure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass
class Received:
    """One accepted message."""

    received_at: float
    message_id: str | None
    mail_from: str
    rcpt_tos: list[str]
    size: int
    peer: str
    file: str | None = None
    data: bytes | None = field(default=None, repr=False)

    def journal_line(self) -> str:
        record = {
            "received_at": self.received_at,
            "message_id": self.message_id,
            "mail_from": self.mail_from,
            "rcpt_tos": self.rcpt_tos,
            "size": self.size,
            "peer": self.peer,
            "file": self.file,
        }
        return json.dumps(record, separators=(",", ":")) + "\n"


def message_id_of(data: bytes) -> str | None:
    """The Message-ID header of raw message bytes."""
    head = data.split(b"\r\n\r\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    return found.group(1).decode("ascii", "replace") if found else None
