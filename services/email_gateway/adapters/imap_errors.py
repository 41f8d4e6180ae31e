"""How an IMAP step fails (shared by the session and its OAuth sign-in)."""

from __future__ import annotations

from typing import Literal

ImapStage = Literal["connect", "tls", "login", "imap"]


class ImapFailure(Exception):
    """An IMAP step failed; `stage` is connect, tls, login or imap."""

    def __init__(self, stage: ImapStage, message: str, *, held: bool = False) -> None:
        super().__init__(message)
        self.stage = stage
        # Issue 19: an OAuth sign-in refused for good; polling waits for corrected settings.
        self.held = held
