"""What one SMTP attempt means for the message (pure).

SMTP says `sent` (250 to the end of DATA), `retry` (4xx, or the connection failed before the
message was handed over), `failed` (5xx), `hold` (the account's sign-in was refused: the
message waits untouched until the settings are corrected) or nothing usable after the
message was handed over (`ambiguous`: the connection broke before the final reply). An
ambiguous send may have reached the server; it is looked for in the Sent folder before it is
sent again.
"""

from __future__ import annotations

from typing import Literal

SmtpKind = Literal["sent", "retry", "failed", "hold", "ambiguous"]
Next = Literal["sent", "retry", "failed", "hold", "look_in_sent_folder"]


def after_attempt(kind: SmtpKind) -> Next:
    """The message's next state after an SMTP attempt that ended `kind`."""
    if kind == "ambiguous":
        return "look_in_sent_folder"
    return kind


def after_looking(found: bool | None) -> Literal["sent", "retry"]:
    """After an ambiguous attempt: `sent` if the Sent folder holds the message; otherwise (not
    there, or it could not be checked: None) sent again with the same Message-ID, which
    receiving servers use to drop the copy."""
    return "sent" if found else "retry"
