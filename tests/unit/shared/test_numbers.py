"""Numbers for people: one helper, separators and trimmed decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.domain.numbers import for_field, for_people


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (30240000, "30,240,000"),
        (30240000.0, "30,240,000"),
        (1000, "1,000"),
        (999, "999"),
        (0, "0"),
        (-1234, "-1,234"),
        (1234.5, "1,234.5"),
        (2.50, "2.5"),
        (0.125, "0.13"),
        (0.001, "0"),
        (Decimal("1234567.891"), "1,234,567.89"),
    ],
)
def test_quantities_get_separators_and_trimmed_decimals(value: float, shown: str) -> None:
    assert for_people(value) == shown


def test_places_none_and_text() -> None:
    assert for_people(0.125, places=6) == "0.125"
    assert for_people(1 / 3, places=3) == "0.333"
    assert for_people(None) == "—"
    assert for_people(None, none="?") == "?"
    assert for_people("unknown") == "unknown"  # type: ignore[arg-type]
    assert for_people(True) == "True"
    assert for_people(float("inf")) == "inf"


def test_form_values_have_no_separators() -> None:
    assert for_field(30240000.0) == "30240000"
    assert for_field(12.5) == "12.5"
    assert for_field(None) == ""


def test_console_templates_use_the_one_helper() -> None:
    """No template formats numbers on its own; the `number` filter is `for_people`."""
    from pathlib import Path

    from services.config.console import app

    templates = Path(app.__file__).parent / "templates"
    own = [p.name for p in templates.glob("*.html") if "'{:," in p.read_text()]
    assert own == []
    source = Path(app.__file__).read_text()
    assert "number=for_people" in source
