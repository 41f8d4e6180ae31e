"""The public JSON API (`/api/v1`): groups, sites, settings, sessions, forecast, messages.

Writes take the aggregate's version in `If-Match` (the `ETag` of the last read); a stale one is
refused with 409 and nothing is written. Authentication is a bearer token; another group's or
site's data answers 404, never revealing that it exists.

(No `from __future__ import annotations` here: FastAPI must resolve the route signatures'
annotations, some of which are local to `build_router`.)
"""

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from services.config.adapters import read_model
from services.config.adapters.batches import BatchStore
from services.config.domain.aggregates import SiteState
from services.config.email_test import EmailGatewayUnavailable, request_email_test
from services.config.entrypoints.access import SiteAccess
from services.config.entrypoints.bodies import (
    GroupOut,
    GroupPatch,
    OutcomeOut,
    SendNowIn,
    SiteCreate,
    SiteOut,
    SitePatch,
    SubmissionOut,
    outcome_out,
    site_out,
)
from services.config.entrypoints.preconditions import if_match_version
from services.config.entrypoints.problems import AuthError, Problem, problem
from services.config.handlers import (
    ConfigHandlers,
    GatewayUnavailable,
    credit_outlook,
    redact,
    submission,
)
from shared.bus import subjects
from shared.domain.planning import site_forecast
from shared.domain.site_settings import SettingsError, Window
from shared.tokens import Principal, TokenRegistry

log = logging.getLogger(__name__)

Channel = Literal["sms", "email"]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or unknown token"},
    404: {"model": Problem, "description": "No such resource you may see"},
    422: {"model": Problem, "description": "Invalid input; each bad field is named"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"model": Problem, "description": "Your role may not do this"},
    409: {
        "model": Problem,
        "description": "Stale version (reload and retry), or an SMS provider account "
        "another group uses",
    },
    428: {"model": Problem, "description": "If-Match (the version you read) is required"},
}


@dataclass
class ApiContext:
    """What the routes need, wired by the composition root."""

    handlers: ConfigHandlers
    tokens: TokenRegistry
    nc: Client
    batches: BatchStore | None = None


def build_router(ctx: ApiContext) -> APIRouter:
    """Every `/api/v1` route."""
    router = APIRouter(prefix="/api/v1")
    handlers = ctx.handlers
    msg_id_key = handlers.box.derive_key(submission.MSG_ID_PURPOSE)

    access = SiteAccess(ctx.tokens, handlers)
    Caller = Annotated[Principal, Depends(access.principal)]

    async def managed_site(site_id: str, who: Principal) -> SiteState:
        return await access.managed(site_id, who, cannot=f"change site {site_id}")

    def etag(response: Response, version: int) -> None:
        response.headers["ETag"] = f'"{version}"'

    @router.get("/me", summary="Who the token belongs to", responses=ERRORS)
    async def me(who: Caller) -> dict[str, Any]:
        return {
            "token_id": who.token_id,
            "group_id": who.group_id,
            "role": who.role,
            "sites": sorted(who.sites),
        }

    # --- groups --------------------------------------------------------------------------

    @router.get("/groups/{group_id}", response_model=GroupOut, responses=ERRORS)
    async def get_group(group_id: str, who: Caller, response: Response) -> GroupOut:
        access.group(group_id, who)
        group = await handlers.group(group_id)
        etag(response, group.version)
        return GroupOut(
            group_id=group.group_id,
            name=group.name,
            version=group.version,
            defaults=redact(group.defaults.model_dump(mode="json")),
        )

    @router.patch("/groups/{group_id}/defaults", response_model=OutcomeOut, responses=WRITE_ERRORS)
    async def patch_group(
        group_id: str,
        body: GroupPatch,
        who: Caller,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> OutcomeOut:
        access.admin_of(group_id, who, "only a group admin changes group defaults")
        outcome, updated = await handlers.change_group_defaults(
            group_id, if_match_version(if_match), body.set, actor=who.actor
        )
        etag(response, outcome.version)
        return outcome_out(outcome, updated)

    @router.get("/groups/{group_id}/sites", responses=ERRORS)
    async def list_sites(group_id: str, who: Caller) -> list[dict[str, Any]]:
        access.group(group_id, who)
        async with handlers.db() as session:
            rows = await read_model.list_sites(session, group_id)
        return [r for r in rows if who.sees_site(group_id, r["site_id"])]

    @router.post(
        "/groups/{group_id}/sites", status_code=201, response_model=SiteOut, responses=WRITE_ERRORS
    )
    async def create_site(
        group_id: str, body: SiteCreate, who: Caller, response: Response
    ) -> SiteOut:
        access.admin_of(group_id, who, "only a group admin creates sites")
        profile: dict[str, Any] = {"name": body.name}
        if body.timezone is not None:
            profile["timezone"] = body.timezone
        if body.region is not None:
            profile["region"] = body.region
        try:
            subjects.check_token(body.site_id, "site id")
        except subjects.InvalidToken as exc:
            raise SettingsError({"site_id": str(exc)}) from None
        site = await handlers.create_site(
            group_id, body.site_id, profile, body.settings, actor=who.actor
        )
        etag(response, site.version)
        response.headers["Location"] = f"/api/v1/sites/{site.site_id}"
        return site_out(site)

    # --- sites ---------------------------------------------------------------------------

    @router.get("/sites/{site_id}", response_model=SiteOut, responses=ERRORS)
    async def get_site(site_id: str, who: Caller, response: Response) -> SiteOut:
        site = await access.site_for(site_id, who)
        etag(response, site.version)
        return site_out(site)

    @router.patch("/sites/{site_id}/settings", response_model=OutcomeOut, responses=WRITE_ERRORS)
    async def patch_site(
        site_id: str,
        body: SitePatch,
        who: Caller,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> OutcomeOut:
        await managed_site(site_id, who)
        outcome = await handlers.change_site(
            site_id,
            if_match_version(if_match),
            body.set,
            body.inherit,
            actor=who.actor,
            note=body.note,
        )
        etag(response, outcome.version)
        return outcome_out(outcome)

    window_paths = {"sms": "sms.sessions", "email": "email.sessions"}

    @router.post(
        "/sites/{site_id}/sessions/{channel}",
        status_code=201,
        response_model=OutcomeOut,
        responses=WRITE_ERRORS,
    )
    async def add_session(
        site_id: str,
        channel: Channel,
        window: Window,
        who: Caller,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> OutcomeOut:
        await managed_site(site_id, who)
        outcome = await handlers.change_windows(
            site_id, if_match_version(if_match), window_paths[channel], add=window, actor=who.actor
        )
        etag(response, outcome.version)
        response.headers["Location"] = f"/api/v1/sites/{site_id}/sessions/{channel}/{window.id}"
        return outcome_out(outcome)

    @router.delete(
        "/sites/{site_id}/sessions/{channel}/{window_id}",
        response_model=OutcomeOut,
        responses=WRITE_ERRORS,
    )
    async def delete_session(
        site_id: str,
        channel: Channel,
        window_id: str,
        who: Caller,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> OutcomeOut:
        await managed_site(site_id, who)
        outcome = await handlers.change_windows(
            site_id,
            if_match_version(if_match),
            window_paths[channel],
            remove=window_id,
            actor=who.actor,
        )
        etag(response, outcome.version)
        return outcome_out(outcome)

    @router.put(
        "/sites/{site_id}/sessions/{channel}", response_model=OutcomeOut, responses=WRITE_ERRORS
    )
    async def replace_sessions(
        site_id: str,
        channel: Channel,
        windows: list[Window],
        who: Caller,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> OutcomeOut:
        await managed_site(site_id, who)
        outcome = await handlers.change_windows(
            site_id,
            if_match_version(if_match),
            window_paths[channel],
            replace=windows,
            actor=who.actor,
        )
        etag(response, outcome.version)
        return outcome_out(outcome)

    @router.post(
        "/sites/{site_id}/blackouts",
        status_code=201,
        response_model=OutcomeOut,
        responses=WRITE_ERRORS,
    )
    async def add_blackout(
        site_id: str,
        window: Window,
        who: Caller,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> OutcomeOut:
        await managed_site(site_id, who)
        outcome = await handlers.change_windows(
            site_id, if_match_version(if_match), "blackouts", add=window, actor=who.actor
        )
        etag(response, outcome.version)
        return outcome_out(outcome)

    @router.delete(
        "/sites/{site_id}/blackouts/{window_id}", response_model=OutcomeOut, responses=WRITE_ERRORS
    )
    async def delete_blackout(
        site_id: str,
        window_id: str,
        who: Caller,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> OutcomeOut:
        await managed_site(site_id, who)
        outcome = await handlers.change_windows(
            site_id, if_match_version(if_match), "blackouts", remove=window_id, actor=who.actor
        )
        etag(response, outcome.version)
        return outcome_out(outcome)

    # --- forecast, messages, send-now, provider test ------------------------------------------

    async def queue_depth(site: SiteState, channel: Channel) -> int | None:
        try:
            reply = await ctx.nc.request(
                subjects.rpc(f"{channel}_gateway", "queue_depth"),
                json.dumps({"site_id": site.site_id}).encode(),
                timeout=0.5,
            )
            return int(json.loads(reply.data)["queued"])
        except (NoRespondersError, NatsTimeout, ValueError, KeyError, TypeError):
            return None

    async def submit_batch(
        site: SiteState, body: submission.SubmissionIn, actor: str, batch_id: str, request: Request
    ) -> list[submission.Accepted]:
        async def record(accepted: list[submission.Accepted]) -> None:
            # Recorded before publishing, so the read model knows every message of the batch
            # (and its total) before the gateway reports any of them.
            if ctx.batches is not None:
                await ctx.batches.record(
                    batch_id=batch_id,
                    group_id=site.group_id,
                    site_id=site.site_id,
                    channel=body.channel,
                    message_ids=[a.message_id for a in accepted],
                    actor=actor,
                )

        try:
            return await submission.submit(
                ctx.nc,
                site,
                body,
                actor,
                trace_headers=request.headers,
                msg_id_key=msg_id_key,
                batch_id=batch_id,
                before_publish=record,
                personal=handlers.personal,
            )
        except submission.PublishFailed as exc:
            if ctx.batches is not None:
                await ctx.batches.forget(batch_id, site.site_id, exc.failed)
            raise

    @router.get("/sites/{site_id}/forecast", responses=ERRORS)
    async def get_forecast(
        site_id: str,
        who: Caller,
        channel: Channel = "sms",
        messages: Annotated[int, Query(ge=0, le=10_000_000, description="New messages")] = 100,
        days: Annotated[int, Query(ge=1, le=366, description="Horizon in days")] = 7,
        queued: Annotated[
            int | None, Query(ge=0, description="Already queued; default: ask the gateway")
        ] = None,
    ) -> dict[str, Any]:
        site = await access.site_for(site_id, who)
        note = None
        if queued is None:
            queued = await queue_depth(site, channel)
            if queued is None:
                queued, note = 0, "the gateway did not report its queue; assumed empty"
        result = site_forecast(site.settings, channel, messages, queued, days, site_id=site.site_id)
        if note:
            result["queue_note"] = note
        if channel == "sms" and site.settings.sms.provider.kind != "none":
            result["credits"] = await credit_outlook.for_forecast(ctx.nc, site, messages, queued)
        return result

    @router.post(
        "/sites/{site_id}/messages",
        status_code=202,
        response_model=SubmissionOut,
        responses={**WRITE_ERRORS, 503: {"model": Problem}},
    )
    async def submit(
        site_id: str, body: submission.SubmissionIn, who: Caller, request: Request
    ) -> Any:
        site = await access.lookup(site_id)
        if not who.submits_to_site(site.group_id, site.site_id):
            if who.sees_site(site.group_id, site.site_id):
                raise AuthError(403, f"your role ({who.role}) cannot submit messages")
            raise AuthError(404, f"no site {site_id} you can see")
        batch_id = submission.batch_of(site, body)
        # Asked before publishing, so the new messages are not counted as queued ahead.
        ahead = await queue_depth(site, "sms") if body.channel == "sms" else None
        accepted = await submit_batch(site, body, who.actor, batch_id, request)
        credits = None
        outlook = None
        if body.channel == "sms":
            credits = round(sum(a.cost or 0 for a in accepted), 4)
            outlook = await credit_outlook.for_submission(
                ctx.nc, site, [a.cost or 0 for a in accepted], ahead
            )
        forecast = site_forecast(
            site.settings, body.channel, len(accepted), 0, 7, site_id=site.site_id
        )
        # Built directly: re-validating 10,000 entries through the response model would cost
        # more than the rest of the request (the schema still documents the shape).
        return JSONResponse(
            {
                "accepted": len(accepted),
                "batch_id": batch_id,
                "messages": [a.as_json() for a in accepted],
                "credits_needed": credits,
                "credits": outlook,
                "forecast": forecast,
            },
            status_code=202,
        )

    @router.post("/sites/{site_id}/send-now", status_code=202, responses=WRITE_ERRORS)
    async def send_now(site_id: str, body: SendNowIn, who: Caller) -> dict[str, Any]:
        site = await managed_site(site_id, who)
        event_id = await handlers.send_now(site, body.channel, actor=who.actor, reason=body.reason)
        return {"requested": True, "event_id": event_id, "channel": body.channel}

    @router.post(
        "/sites/{site_id}/provider-test", responses={**WRITE_ERRORS, 503: {"model": Problem}}
    )
    async def provider_test(site_id: str, who: Caller) -> Any:
        site = await managed_site(site_id, who)
        try:
            return await handlers.provider_test(site, actor=who.actor)
        except GatewayUnavailable:
            return problem(503, "SMS gateway unavailable", "No SMS gateway answered the test.")

    @router.post("/sites/{site_id}/email-test", responses={**WRITE_ERRORS, 503: {"model": Problem}})
    async def email_test(site_id: str, who: Caller) -> Any:
        """Issue 19: connect and sign in to SMTP and IMAP, open the inbox and the Sent
        folder, send nothing; the answer says what worked or the server's reason."""
        site = await managed_site(site_id, who)
        try:
            return await request_email_test(handlers.nc, site.site_id)
        except EmailGatewayUnavailable:
            return problem(503, "Email gateway unavailable", "No email gateway answered the test.")

    @router.post(
        "/sites/{site_id}/provider-unlock", response_model=OutcomeOut, responses=WRITE_ERRORS
    )
    async def provider_unlock(site_id: str, who: Caller) -> OutcomeOut:
        site = await access.site_for(site_id, who)
        if not who.administers_group(site.group_id):
            raise AuthError(403, "only a group admin unlocks the provider account")
        outcome = await handlers.set_provider_lock(
            site_id, False, actor=who.actor, note="provider account unlocked"
        )
        return outcome_out(outcome)

    return router
