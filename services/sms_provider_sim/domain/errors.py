"""Error responses in the provider's shape: `{"error": code, ...}` with the right status."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """Raised by handlers and the simulator core; rendered as a JSON error response."""

    def __init__(
        self, status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body.get("error", "error"))
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}


def invalid(field: str | None, detail: str) -> ApiError:
    """A 400 naming the offending field (dotted path for nested fields, None for the body)."""
    return ApiError(400, {"error": "invalid_request", "field": field, "detail": detail})


def first_error(exc: ValidationError) -> ApiError:
    """The 400 for the first problem pydantic found (one field at a time, like providers)."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    # pydantic prefixes messages of ValueErrors raised in validators; the bare reason reads better.
    detail = str(error["msg"]).removeprefix("Value error, ")
    return invalid(".".join(loc) or None, detail)


def parse_json(raw: bytes) -> tuple[object, ApiError | None]:
    """The decoded JSON body, or the 400 to answer with."""
    try:
        return json.loads(raw), None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, invalid(None, "the body is not valid JSON")


def validate(model: type[M], data: object) -> M:
    """`data` as `model`, or raise the 400 for its first problem."""
    if not isinstance(data, dict):
        raise invalid(None, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc) from None
