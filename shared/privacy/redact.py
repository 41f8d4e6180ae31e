"""Addresses taken out of free text a provider wrote (receipt statuses, bounce diagnostics).

A delivery receipt's status or error, or a bounce's diagnostic, is the provider's text: several
SMS providers echo the destination (`to`, `msisdn`) in it and mail servers quote the address they
refused. Such text goes into events and ledgers, where personal data may only be sealed, so
anything shaped like a phone number or an email address becomes `<recipient>` first. Pure.
"""

from __future__ import annotations

import re

PLACEHOLDER = "<recipient>"
# An email address, bracketed or not.
_EMAIL = re.compile(r"<?[A-Za-z0-9._%+\-!#$&'*/=?^`{|}~]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+>?")
# A phone number: 9 digits or more, with the separators people and providers write between them
# (status codes, SMTP enhanced codes such as 5.1.1, error numbers and dates are shorter; a run
# followed by `:` is a time of day).
_PHONE = re.compile(r"(?<![\w.])\+?\d(?:[\s\-().]{0,2}\d){8,}(?![\w:])")


def without_addresses(text: str) -> str:
    """`text` with email addresses and phone numbers replaced by `<recipient>`."""
    return _PHONE.sub(PLACEHOLDER, _EMAIL.sub(PLACEHOLDER, text))


def optional(text: str | None) -> str | None:
    """`without_addresses` for an optional field."""
    return None if text is None else without_addresses(text)
