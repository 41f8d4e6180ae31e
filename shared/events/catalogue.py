"""The event catalogue (docs/events.md), generated from the registry so it cannot drift."""

from __future__ import annotations

import inspect
from typing import Any

from shared.events.registry import EventRegistry, registry


def _field_type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " \\| ".join(_field_type(s) for s in schema["anyOf"])
    if "$ref" in schema:
        ref: str = schema["$ref"]
        return ref.rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"list[{_field_type(schema.get('items', {}))}]"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    return str(schema.get("type", schema.get("const", "any")))


def render_catalogue(events: EventRegistry = registry) -> str:
    """Markdown listing every event type, its version and its data fields."""
    import shared.events.schemas  # noqa: F401  (registers every schema)

    lines = [
        "# Event catalogue",
        "",
        "Generated from the event registry by `stagger docs events`; a test fails when this",
        "file and the code disagree. Every event is a CloudEvent (binary mode on NATS: `ce-*`",
        "headers, JSON data) with the extensions `actor`, `correlationid`, `groupid`, `siteid`.",
        "The `type` attribute carries the version suffix (`….v2`); older versions are upcast on",
        "read, so a log written by an old build replays under new code.",
        "",
    ]
    by_module: dict[str, list[tuple[str, type]]] = {}
    for name, cls in events.known_types().items():
        by_module.setdefault(cls.__module__.rsplit(".", 1)[-1], []).append((name, cls))
    for module, entries in sorted(by_module.items()):
        lines += [f"## {module}", ""]
        for name, cls in entries:
            doc = inspect.getdoc(cls) or ""
            lines += [f"### `{name}.v{cls.version()}`", "", doc, ""]
            schema = cls.model_json_schema()
            props = schema.get("properties", {})
            required = set(schema.get("required", []))
            if props:
                lines += ["| field | type | required |", "|---|---|---|"]
                for field_name, field_schema in props.items():
                    mark = "yes" if field_name in required else ""
                    lines.append(f"| `{field_name}` | {_field_type(field_schema)} | {mark} |")
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"
