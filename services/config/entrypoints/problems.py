"""Errors as `application/problem+json` (RFC 9457), each bad field named."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import nats.errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.config.handlers import AccountInUse, NotFound, VersionMismatch
from services.config.handlers.submission import PublishFailed
from shared.bus.subjects import InvalidToken
from shared.domain.site_settings import SettingsError
from shared.eventstore import ConcurrencyConflict

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


class FieldError(BaseModel):
    """One invalid field."""

    field: str
    message: str


class Problem(BaseModel):
    """An error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] = []
    current_version: int | None = None


class AuthError(Exception):
    """401 (who are you?), 403 (you may not) or 404 (nothing you may see here)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    errors: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response."""
    body = Problem(
        title=title,
        status=status,
        detail=detail,
        errors=[FieldError(field=k, message=v) for k, v in (errors or {}).items()],
        **extra,
    ).model_dump(exclude_none=True)
    headers = {"WWW-Authenticate": 'Bearer realm="stagger"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def install(app: FastAPI) -> None:
    """Register the error handlers on an app."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: dict[str, str] = {}
        for error in exc.errors():
            errors.setdefault(
                _field(tuple(error["loc"])), str(error["msg"]).removeprefix("Value error, ")
            )
        return problem(422, "Invalid request", "Some fields are invalid.", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot even decode (not UTF-8). Undecodable and
            # malformed JSON are the same mistake; the latter is already a 422 naming the body.
            return problem(422, "Invalid request", "Some fields are invalid.", {"body": "not JSON"})
        response = problem(exc.status_code, HTTPStatus(exc.status_code).phrase, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(SettingsError)
    async def _settings(_: Request, exc: SettingsError) -> JSONResponse:
        return problem(422, "Invalid settings", "Nothing was changed.", exc.errors)

    @app.exception_handler(AccountInUse)
    async def _account_in_use(_: Request, exc: AccountInUse) -> JSONResponse:
        # A conflict with existing state, not a malformed value; the other group stays unnamed.
        return problem(409, "Provider account in use", "Nothing was changed.", exc.errors)

    @app.exception_handler(InvalidToken)
    async def _token(_: Request, exc: InvalidToken) -> JSONResponse:
        return problem(422, "Invalid identifier", str(exc), {"id": str(exc)})

    @app.exception_handler(VersionMismatch)
    async def _stale(_: Request, exc: VersionMismatch) -> JSONResponse:
        return problem(
            409,
            "Settings changed meanwhile",
            f"Your copy is version {exc.expected}; the current version is {exc.actual}. "
            "Reload, reapply your change and send it with the new version.",
            current_version=exc.actual,
        )

    @app.exception_handler(ConcurrencyConflict)
    async def _conflict(_: Request, exc: ConcurrencyConflict) -> JSONResponse:
        return problem(
            409,
            "Settings changed meanwhile",
            "Another change landed first; reload and try again.",
            current_version=exc.actual,
        )

    @app.exception_handler(NotFound)
    async def _missing(_: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "Not found", f"No {exc} you can see.")

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        titles = {401: "Unauthorised", 403: "Forbidden", 404: "Not found"}
        return problem(exc.status, titles.get(exc.status, "Error"), exc.detail)

    @app.exception_handler(PublishFailed)
    async def _publish(_: Request, exc: PublishFailed) -> JSONResponse:
        log.error("outbox publish failed", extra={"reason": exc.reason, "failed": len(exc.failed)})
        response = problem(
            503,
            "Messages not all stored",
            f"{exc.reason}. {len(exc.stored)} stored, {len(exc.failed)} not: resubmit with the "
            "same idempotency keys (stored ones are not duplicated).",
        )
        return response

    @app.exception_handler(nats.errors.Error)
    async def _bus(_: Request, exc: nats.errors.Error) -> JSONResponse:
        # A JetStream leader election or a reconnect. Retrying is safe: a settings change that
        # was stored after all makes the retry a 409 (its If-Match version is gone), and
        # submissions are de-duplicated by their idempotency keys.
        log.warning("NATS unavailable for a request", extra={"error": repr(exc)})
        response = problem(
            503,
            "Event store unavailable",
            f"NATS did not answer ({type(exc).__name__}). Retry shortly: a change that was "
            "stored after all is reported as a version conflict, and resubmitted messages "
            "with the same idempotency keys are not duplicated.",
        )
        response.headers["Retry-After"] = "2"
        return response


def document_problem_media_type(app: FastAPI) -> None:
    """Declare error responses as `application/problem+json`, the type they are sent with.

    FastAPI documents every response model under the route's media type (`application/json`);
    clients that check the declared type would otherwise reject every error we send.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        body = content.get("application/json", {})
                        if status[:1] in "45" and body.get("schema", {}).get("$ref", "").endswith(
                            "/Problem"
                        ):
                            content[PROBLEM] = content.pop("application/json")
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
