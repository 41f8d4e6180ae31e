"""Turning a submitted wizard screen into settings values: types only, never rules (the
settings model checks every rule, so an error lands next to the field of the path it names)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from services.config.console.forms import Step
from shared.domain.site_settings import Window


def parse_step(
    step: Step, form: Mapping[str, Any], *, locked_paths: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(values by path, secrets typed in by path, errors by path) from a submitted screen.

    A field missing from the form (a disabled control) is left unchanged, except checkboxes,
    which browsers omit when unticked.
    """
    values: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    errors: dict[str, str] = {}
    for f in step.fields:
        if f.path in locked_paths or f.kind == "windows":
            continue
        present = f.path in form
        raw = form.get(f.path)
        text = raw.strip() if isinstance(raw, str) else ""
        if f.kind in ("bool", "inverted", "checkmode"):
            if f"{f.path}.present" not in form:
                continue  # the screen did not show it
            ticked = present and raw not in ("", "off", "false")
            if f.kind == "bool":
                values[f.path] = ticked
            elif f.kind == "inverted":
                values[f.path] = not ticked
            else:
                values[f.path] = "automatic" if ticked else "manual"
            continue
        if not present:
            continue
        if f.kind == "secret":
            if text:
                secrets[f.path] = text
            continue
        if f.kind in ("text", "email"):
            values[f.path] = text or (None if f.optional else "")
        elif f.kind in ("int", "float"):
            if not text and f.optional:
                values[f.path] = None
                continue
            try:
                number = float(text)
            except ValueError:
                errors[f.path] = "enter a number"
                continue
            if f.kind == "int":
                if number != int(number):
                    errors[f.path] = "enter a whole number"
                    continue
                values[f.path] = int(number)
            else:
                values[f.path] = int(number) if number == int(number) else number
        elif f.kind in ("select", "radio"):
            allowed = [value for value, _ in f.options]
            if text not in allowed:
                errors[f.path] = "choose one of the options"
                continue
            values[f.path] = text
        elif f.kind in ("times", "list"):
            parts = [p.strip() for p in re.split(r"[,\s]+", text) if p.strip()]
            values[f.path] = parts
    return values, secrets, errors


def parse_window(form: Mapping[str, Any], path: str, days: list[str]) -> tuple[Any, dict[str, str]]:
    """A new weekly window from the "+1" controls of the list at `path`."""
    start = str(form.get(f"new.{path}.start", "")).strip()
    end = str(form.get(f"new.{path}.end", "")).strip()
    if not days:
        return None, {f"new.{path}": "tick at least one day"}
    try:
        window = Window(days=days, start=start, end=end)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else "start"
        message = str(first["msg"]).removeprefix("Value error, ")
        return None, {f"new.{path}": f"{where}: {message}"}
    return window.model_dump(mode="json"), {}
