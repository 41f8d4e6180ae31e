"""HTTP routes: the provider API (Bearer auth), the admin API (no auth: a dev tool), health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.sms_provider_sim.dialects.dropping import hold_then_drop
from services.sms_provider_sim.domain.errors import ApiError, invalid, parse_json, validate
from services.sms_provider_sim.domain.faults import FaultConfig
from services.sms_provider_sim.domain.models import (
    ACCOUNT_NAME,
    Account,
    AccountUpdate,
    InboundRequest,
    TopupRequest,
    number,
)
from services.sms_provider_sim.handlers.simulator import Simulator

provider = APIRouter(prefix="/v1", tags=["provider"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])
health = APIRouter(tags=["health"])


def unauthorized() -> ApiError:
    """The 401 for a missing or unknown key (a new instance: raised exceptions keep state)."""
    return ApiError(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"})


def simulator(request: Request) -> Simulator:
    """The app's simulator."""
    sim: Simulator = request.app.state.simulator
    return sim


def authenticated(request: Request) -> Account:
    """The calling account, or 401."""
    account = simulator(request).authenticate(request.headers.get("authorization"))
    if account is None:
        raise unauthorized()
    return account


async def json_body(request: Request) -> object:
    """The request's JSON body, or 400."""
    data, error = parse_json(await request.body())
    if error is not None:
        raise error
    return data


# provider API


@provider.post("/messages")
async def send_message(request: Request) -> Response:
    """Submit one SMS; idempotent on `reference` per account."""
    sim = simulator(request)
    data, parse_error = parse_json(await request.body())
    reference = data.get("reference") if isinstance(data, dict) else None
    reference = reference if isinstance(reference, str) else None
    account = sim.authenticate(request.headers.get("authorization"))
    submission = sim.record_submission(account.name if account else None, reference)
    if account is None:
        submission.outcome, submission.status_code = "unauthorized", 401
        raise unauthorized()
    outcome = await sim.send(account, data, parse_error, submission)
    if outcome.drop_after_seconds is not None:
        await hold_then_drop(request, outcome.drop_after_seconds, sim.stopping)
        # The connection is gone: uvicorn discards whatever is returned here.
        return Response(status_code=204)
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=outcome.headers)


@provider.get("/messages/{message_id}")
async def get_message(message_id: str, request: Request) -> dict[str, Any]:
    """One message by the simulator's id."""
    account = authenticated(request)
    return simulator(request).message(account, message_id).view()


@provider.get("/messages")
async def find_message(request: Request, reference: str | None = None) -> dict[str, Any]:
    """One message by our reference: how the gateway settles an uncertain send."""
    account = authenticated(request)
    if not reference:
        raise invalid("reference", "give ?reference=<our message id>")
    return simulator(request).message_by_reference(account, reference).view()


@provider.get("/balance")
async def balance(request: Request) -> dict[str, Any]:
    """The account's credits and auto top-up settings."""
    account = authenticated(request)
    return {
        "balance": number(account.balance),
        "unit": "credits",
        "auto_topup": account.auto_topup.view(),
    }


@provider.post("/topup")
async def topup(request: Request) -> dict[str, Any]:
    """Buy credits (what a gateway does when the balance falls below the threshold)."""
    account = authenticated(request)
    body = validate(TopupRequest, await json_body(request))
    new_balance = simulator(request).topup(account, body.amount)
    return {"balance": number(new_balance), "unit": "credits", "amount": body.amount}


# admin API


def _account_name(account: str) -> str:
    if not ACCOUNT_NAME.fullmatch(account):
        raise invalid("account", "1-100 characters from A-Z a-z 0-9 . _ -")
    return account


@admin.put("/accounts/{account}")
async def put_account(account: str, request: Request) -> JSONResponse:
    """Create (201) or partially update (200) an account."""
    update = validate(AccountUpdate, await json_body(request))
    stored, created = simulator(request).upsert_account(_account_name(account), update)
    return JSONResponse(stored.admin_view(), status_code=201 if created else 200)


@admin.get("/accounts/{account}")
async def get_account(account: str, request: Request) -> dict[str, Any]:
    """One account, keys and top-ups included."""
    stored = simulator(request).store.accounts.get(account)
    if stored is None:
        raise ApiError(404, {"error": "not_found"})
    return stored.admin_view()


@admin.get("/accounts")
async def list_accounts(request: Request) -> list[dict[str, Any]]:
    """Every account."""
    return [a.admin_view() for a in simulator(request).store.accounts.values()]


@admin.get("/faults")
async def get_faults(request: Request) -> dict[str, Any]:
    """The active fault configuration."""
    return simulator(request).faults.config.model_dump()


@admin.put("/faults")
async def put_faults(request: Request) -> dict[str, Any]:
    """Replace the fault configuration (applies to `POST /v1/messages` only)."""
    config = validate(FaultConfig, await json_body(request))
    simulator(request).configure_faults(config)
    return config.model_dump()


@admin.delete("/faults")
async def delete_faults(request: Request) -> dict[str, Any]:
    """Remove every fault."""
    sim = simulator(request)
    sim.clear_faults()
    return sim.faults.config.model_dump()


@admin.get("/submissions")
async def submissions(
    request: Request, account: str | None = None, reference: str | None = None
) -> list[dict[str, Any]]:
    """Every `POST /v1/messages` attempt in arrival order."""
    return [
        s.model_dump()
        for s in simulator(request).store.submissions
        if (account is None or s.account == account)
        and (reference is None or s.reference == reference)
    ]


@admin.get("/messages")
async def messages(
    request: Request, account: str | None = None, reference: str | None = None
) -> list[dict[str, Any]]:
    """Every stored message in acceptance order."""
    return [
        m.admin_view()
        for m in simulator(request).store.messages.values()
        if (account is None or m.account == account)
        and (reference is None or m.reference == reference)
    ]


@admin.get("/webhooks")
async def webhooks(
    request: Request, event_id: str | None = None, type: str | None = None
) -> list[dict[str, Any]]:
    """Every webhook delivery attempt, in order."""
    return [
        w.model_dump()
        for w in simulator(request).store.webhook_attempts
        if (event_id is None or w.event_id == event_id) and (type is None or w.type == type)
    ]


@admin.post("/inbound", status_code=202)
async def inbound(request: Request) -> dict[str, Any]:
    """Inject a patient's reply; it is POSTed to the account's webhook."""
    body = validate(InboundRequest, await json_body(request))
    message = simulator(request).inbound(body)
    account = simulator(request).store.accounts[message.account]
    return {"id": message.id, "webhook_url": account.webhook_url}


@admin.get("/inbound")
async def list_inbound(request: Request) -> list[dict[str, Any]]:
    """Every injected reply."""
    return [m.admin_view() for m in simulator(request).store.inbound]


@admin.post("/reset")
async def reset(request: Request) -> dict[str, Any]:
    """Forget messages, submissions, inbound replies, webhook attempts and faults."""
    await simulator(request).reset()
    return {"reset": True}


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness and readiness (the simulator has no dependencies)."""
    return {"status": "ok"}
