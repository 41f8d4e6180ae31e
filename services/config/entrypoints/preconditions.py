"""Optimistic concurrency on the API: a write names the version it read (If-Match: the ETag),
and a write without one is answered 428."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.config.entrypoints.problems import problem
from shared.domain.site_settings import SettingsError


def if_match_version(if_match: str | None) -> int:
    """The version an If-Match header names (428 when there is none, 422 when malformed)."""
    if if_match is None:
        raise _Precondition()
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise SettingsError({"If-Match": 'must be the version from the ETag, e.g. "42"'})
    return int(value)


class _Precondition(Exception):
    pass


def install_precondition_handler(app: FastAPI) -> None:
    """428 when a write comes without If-Match."""

    @app.exception_handler(_Precondition)
    async def _missing(_: Request, __: _Precondition) -> JSONResponse:
        return problem(
            428,
            "Version required",
            "Send the version you read (the ETag) in If-Match.",
            {"If-Match": "required"},
        )
