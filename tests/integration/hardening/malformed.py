"""Hypothesis strategies for malformed bus messages, each with what its dead letter must say.

Every strategy starts from one *valid* event of the type a consumer expects and breaks it in one
way: random bytes, no or garbage CloudEvents headers, truncated or non-UTF-8 JSON, JSON of the
wrong shape, a field of the wrong type or missing, an unknown event type, a newer version, a
valid event of another type, hostile values in a valid shape, or a body up to NATS' 1 MiB
payload limit. `Malformed.expect` is a regular expression the dead letter's reason must match:
the reason has to name what was wrong.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from shared.events.codec import MSG_ID, encode
from shared.events.envelope import EventData, make_event

MAX_PAYLOAD = 1024 * 1024
"""nats-server's default `max_payload`: headers and body together."""

NO_CE = r"no CloudEvents headers"
BAD_JSON = r"Invalid JSON"
VALIDATION = r"validation error"

_SAFE = string.ascii_letters + string.digits + " -_.:/=+;,@"


@dataclass(frozen=True)
class Malformed:
    """One broken message and the pattern its dead letter's reason must match."""

    kind: str
    headers: dict[str, str] | None
    body: bytes
    expect: str
    note: str = field(default="", compare=False)

    def __repr__(self) -> str:
        names = sorted(self.headers) if self.headers else None
        return (
            f"Malformed({self.kind}{' ' + self.note if self.note else ''}, headers={names}, "
            f"{len(self.body)} bytes: {self.body[:60]!r})"
        )


@dataclass(frozen=True)
class Hostile:
    """A valid event shape with hostile values: `changes` merged into the valid data."""

    kind: str
    changes: dict[str, Any]
    expect: str


def headers_of(data: EventData, **attributes: Any) -> tuple[dict[str, str], bytes]:
    """CloudEvents headers (without `Nats-Msg-Id`, so JetStream never de-duplicates a fuzz
    message) and the JSON body of a valid event."""
    headers, body = encode(make_event(data, source="fuzz", actor="test:fuzz", **attributes))
    headers.pop(MSG_ID)
    return headers, body


def header_size(headers: dict[str, str] | None) -> int:
    """Bytes the header block takes on the wire (`NATS/1.0` line, `k: v` lines, blank line)."""
    if not headers:
        return 0
    return 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


def junk_headers() -> st.SearchStrategy[dict[str, str] | None]:
    """No headers, or headers that are not CloudEvents attributes (content-type included:
    FastStream decodes a body as JSON when it says so)."""
    names = st.sampled_from(["x-junk", "content-type", "traceparent", "X-Sim-Signature"]) | (
        st.text(string.ascii_lowercase + "-", min_size=1, max_size=20).filter(
            lambda n: not n.startswith(("ce-", "nats-")) and n.strip("-")
        )
    )
    values = st.text(_SAFE, min_size=1, max_size=60).map(str.strip).filter(bool)
    return (
        st.none()
        | st.dictionaries(names, values, max_size=4)
        | st.just({"content-type": "application/json"})
    )


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=30)
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
        max_leaves=12,
    )


def _wrong_value(current: Any) -> Any:
    """A value no field of `current`'s type accepts."""
    return [["not", "this"]] if isinstance(current, dict) else {"not": ["this"]}


def malformed(
    example: EventData,
    *,
    others: Sequence[tuple[EventData, str]] = (),
    hostile: Sequence[Hostile] = (),
    oversized: bool = True,
    attributes: dict[str, Any] | None = None,
) -> st.SearchStrategy[Malformed]:
    """Broken variants of `example` (the valid event a consumer expects).

    `others`: valid events of another type with the pattern their rejection must match;
    `hostile`: valid-shaped variants the consumer must refuse.
    """
    headers, body = headers_of(example, **(attributes or {}))
    data = json.loads(body)
    cls = type(example)
    type_name, version = cls.type_name(), cls.version()
    required = sorted(
        name for name, info in cls.model_fields.items() if info.is_required() and name in data
    )

    def with_headers(**changes: str | None) -> dict[str, str]:
        result = dict(headers)
        for name, value in changes.items():
            name = name.replace("_", "-")
            if value is None:
                result.pop(name, None)
            else:
                result[name] = value
        return result

    kinds: list[st.SearchStrategy[Malformed]] = [
        st.builds(
            lambda h, b: Malformed("random_bytes", h, b, NO_CE),
            junk_headers(),
            st.binary(max_size=600),
        ),
        junk_headers().map(lambda h: Malformed("no_ce_headers", h, body, NO_CE)),
        st.integers(0, len(body) - 1).map(
            lambda n: Malformed("truncated_json", headers, body[:n], BAD_JSON, f"at {n}")
        ),
        st.builds(
            lambda at, junk: Malformed(
                "invalid_utf8", headers, body[:at] + junk + body[at:], BAD_JSON, f"at {at}"
            ),
            st.integers(0, len(body)),
            st.binary(min_size=1, max_size=4).map(lambda b: bytes(0x80 | (c & 0x7F) for c in b)),
        ),
        json_values()
        .filter(lambda v: not (isinstance(v, dict) and set(required) <= set(v)))
        .map(
            lambda v: Malformed(
                "wrong_shape", headers, json.dumps(v).encode(), VALIDATION + "|" + BAD_JSON
            )
        ),
        st.sampled_from(required).map(
            lambda name: Malformed(
                "wrong_type",
                headers,
                json.dumps({**data, name: _wrong_value(data[name])}).encode(),
                rf"(?s){VALIDATION}.*\b{name}\b",
                name,
            )
        ),
        st.sampled_from(required).map(
            lambda name: Malformed(
                "missing_field",
                headers,
                json.dumps({k: v for k, v in data.items() if k != name}).encode(),
                rf"(?s)\b{name}\b.*Field required",
                name,
            )
        ),
        st.sampled_from(["ce-source", "ce-id", "ce-time"]).map(
            lambda name: Malformed(
                "missing_attribute", with_headers(**{name: None}), body, rf"KeyError: '{name}'"
            )
        ),
        st.text(string.ascii_letters + " ", min_size=1, max_size=30).map(
            lambda text: Malformed(
                "garbage_time", with_headers(ce_time=text), body, r"Invalid isoformat"
            )
        ),
        st.sampled_from(["", ".v", ".vX", ".v-1", ".version2", ".v1.5"]).map(
            lambda suffix: Malformed(
                "unversioned_type",
                with_headers(ce_type=type_name + suffix),
                body,
                r"no version suffix",
            )
        ),
        st.text(string.ascii_lowercase, min_size=1, max_size=12).map(
            lambda word: Malformed(
                "unknown_type",
                with_headers(ce_type=f"stagger.fuzz.{word}.v1"),
                body,
                r"UnknownEventType: stagger\.fuzz\.",
            )
        ),
        st.integers(version + 1, 10**6).map(
            lambda newer: Malformed(
                "newer_version",
                with_headers(ce_type=f"{type_name}.v{newer}"),
                body,
                rf"v{newer} is newer than v{version}",
            )
        ),
    ]
    for other, expect in others:
        other_headers, other_body = headers_of(other)
        kinds.append(
            st.just(Malformed("other_event", other_headers, other_body, expect, other.type_name()))
        )
    for item in hostile:
        hostile_body = json.dumps({**data, **item.changes}).encode()
        kinds.append(st.just(Malformed(item.kind, headers, hostile_body, item.expect)))
    if oversized:
        kinds.append(_oversized(headers, data))
    return st.one_of(kinds)


def _oversized(headers: dict[str, str], data: dict[str, Any]) -> st.SearchStrategy[Malformed]:
    """Bodies (or headers) from 256 KiB up to the 1 MiB NATS payload limit."""
    room = MAX_PAYLOAD - header_size(headers) - 256

    def build(size: int, fill: str, in_header: bool) -> Malformed:
        if in_header:
            # A huge header beside a body that is not JSON.
            size = min(size, 60 * 1024)  # JetStream refuses header blocks over 64 KiB
            big = {**headers, "x-padding": "p" * size}
            return Malformed("oversized_header", big, b"\x00" * 64, BAD_JSON, f"{size} bytes")
        if fill == "nul":  # valid UTF-8 that JSON escapes six times over
            return Malformed("oversized", headers, b"\x00" * size, BAD_JSON, f"{size} NUL")
        if fill == "invalid_utf8":
            return Malformed("oversized", headers, b"\xff" * size, BAD_JSON, f"{size} 0xff")
        if fill == "nested":  # deeper than any JSON parser's recursion limit
            return Malformed("oversized", headers, b"[" * size, BAD_JSON, f"{size} nested")
        if fill == "quotes":
            return Malformed("oversized", headers, b'"' * size, BAD_JSON, f"{size} quotes")
        # Valid JSON of the wrong shape, or the right shape with a field grown huge.
        padding = "x" * (size - 40)
        if fill == "wrong_shape":
            return Malformed(
                "oversized", headers, json.dumps([padding]).encode(), VALIDATION, f"{size} list"
            )
        name = next(k for k, v in data.items() if isinstance(v, str))
        grown = {**data, name: {"padding": padding}}
        return Malformed(
            "oversized", headers, json.dumps(grown).encode(), rf"(?s){VALIDATION}.*\b{name}\b"
        )

    return st.builds(
        build,
        st.integers(256 * 1024, room),
        st.sampled_from(["nul", "invalid_utf8", "nested", "quotes", "wrong_shape", "grown_field"]),
        st.booleans(),
    )
