"""Request/reply endpoints that answer every request, however malformed.

FastStream's JSON decoder runs before the handler; a body it cannot decode (or a JSON value
that is not an object) would get no reply at all and the caller would only see a timeout.
These endpoints take the raw bytes (`raw_body`) and parse them here, so a bad request gets an
answer naming what is wrong.
"""

from __future__ import annotations

import json
from typing import Any


class BadRequest(ValueError):
    """The request body is not a JSON object; `str(exc)` says why."""


async def raw_body(msg: Any) -> Any:
    """FastStream decoder that leaves the body as bytes for the handler to parse."""
    return msg.body


def request_object(body: bytes | None, example: str) -> dict[str, Any]:
    """The request as a JSON object; an empty body is an empty request.

    Raises BadRequest mentioning `example` (the expected shape) otherwise.
    """
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the request must be a JSON object like {example}") from exc
    if not isinstance(value, dict):
        raise BadRequest(f"the request must be a JSON object like {example}")
    return value
