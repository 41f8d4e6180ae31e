"""Numbers written for people: "30,240,000", not "30240000"; "2.5", not "2.50".

One helper for every number the console, the forecast and the status lines show, so that a
count reads the same on every page. Identifiers that happen to be numbers (a port, a year, a
position in a stream) are not quantities and are shown as they are.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from numbers import Real

NOTHING = "—"


def for_people(value: float | int | Decimal | None, places: int = 2, none: str = NOTHING) -> str:
    """A quantity with thousands separators and at most `places` decimals, trailing zeros
    dropped: 30240000 → "30,240,000", 1234.5 → "1,234.5", 2.0 → "2", 0.125 → "0.13";
    None → `none`. A value that is not a number (already text) is returned as text."""
    if value is None:
        return none
    if isinstance(value, bool) or not isinstance(value, Real | Decimal):
        return str(value)
    number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    if not number.is_finite():
        return str(value)
    if number == number.to_integral_value():
        return f"{int(number):,}"
    # Half up, as people round (Decimal's default, half even, would write 0.125 as "0.12").
    rounded = number.quantize(Decimal(1).scaleb(-max(places, 0)), rounding=ROUND_HALF_UP)
    text = f"{rounded:,f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def for_field(value: float | int | None) -> str:
    """A number as a form field's value (no separators, which a number input refuses):
    12.0 → "12", 12.5 → "12.5", None → ""."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
