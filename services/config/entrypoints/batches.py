"""Batch routes of the JSON API: list, show (counts, progress, forecast finish) and cancel.

The same tenancy as the rest of `/api/v1`: a batch of a site the token cannot see answers 404
(never revealing that it exists); cancelling needs a role that manages the site.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from services.config.adapters.batches import Batch
from services.config.domain.aggregates import SiteState
from services.config.entrypoints.access import SiteAccess
from services.config.entrypoints.api import ERRORS, WRITE_ERRORS
from services.config.entrypoints.problems import AuthError
from services.config.handlers import ConfigHandlers
from services.config.handlers.batch_commands import BatchCommands
from shared.dispatch.checks import fits
from shared.domain.batches import InvalidBatchId, check_batch_id
from shared.domain.site_settings import SettingsError
from shared.tokens import Principal, TokenRegistry


def batch_router(
    handlers: ConfigHandlers, tokens: TokenRegistry, commands: BatchCommands
) -> APIRouter:
    """`/api/v1/sites/{site_id}/batches…` and `/messages/{message_id}/cancel`."""
    router = APIRouter(prefix="/api/v1")
    store = commands.store

    access = SiteAccess(tokens, handlers)
    Caller = Annotated[Principal, Depends(access.principal)]

    async def site_for(site_id: str, who: Principal, *, manage: bool) -> SiteState:
        if manage:
            return await access.managed(site_id, who, cannot=f"cancel messages of {site_id}")
        return await access.site_for(site_id, who)

    async def batch_of(site: SiteState, batch_id: str) -> Batch:
        try:
            canonical = check_batch_id(batch_id)
        except InvalidBatchId as exc:
            raise SettingsError({"batch_id": str(exc)}) from None
        batch = await store.get(canonical)
        if batch is None or batch.site_id != site.site_id:
            raise AuthError(404, f"no batch {canonical} of site {site.site_id}")
        return batch

    async def shown(site: SiteState, batch: Batch) -> dict[str, Any]:
        return {**batch.as_json(), "forecast": await commands.forecast_finish(site, batch)}

    @router.get("/sites/{site_id}/batches", summary="A site's latest batches", responses=ERRORS)
    async def list_batches(
        site_id: str, who: Caller, limit: Annotated[int, Query(ge=1, le=200)] = 20
    ) -> list[dict[str, Any]]:
        site = await site_for(site_id, who, manage=False)
        return [b.as_json() for b in await store.of_site(site.site_id, limit)]

    @router.get(
        "/sites/{site_id}/batches/{batch_id}",
        summary="One batch: counts by state, progress and forecast finish",
        responses=ERRORS,
    )
    async def get_batch(site_id: str, batch_id: str, who: Caller) -> dict[str, Any]:
        site = await site_for(site_id, who, manage=False)
        return await shown(site, await batch_of(site, batch_id))

    @router.post(
        "/sites/{site_id}/batches/{batch_id}/cancel",
        summary="Cancel every message of the batch not yet handed to a provider",
        responses={**WRITE_ERRORS, 200: {"description": "Nothing left to cancel"}},
        status_code=202,
    )
    async def cancel_batch(site_id: str, batch_id: str, who: Caller) -> JSONResponse:
        site = await site_for(site_id, who, manage=True)
        batch = await batch_of(site, batch_id)
        outcome = await commands.cancel_batch(site, batch, actor=who.actor)
        return JSONResponse(
            {
                "batch_id": batch.batch_id,
                "cancel_requested": outcome.requested,
                "message": outcome.message,
                "event_ids": outcome.event_ids,
                **{k: v for k, v in batch.as_json().items() if k != "batch_id"},
            },
            status_code=202 if outcome.requested else 200,
        )

    @router.post(
        "/sites/{site_id}/messages/{message_id}/cancel",
        summary="Cancel one message if it has not been handed to a provider",
        responses={**WRITE_ERRORS, 200: {"description": "The message had already ended"}},
        status_code=202,
    )
    async def cancel_message(site_id: str, message_id: str, who: Caller) -> JSONResponse:
        site = await site_for(site_id, who, manage=True)
        if not fits(message_id, 64):
            raise SettingsError({"message_id": "not a message id (1-64 printable characters)"})
        state = await store.message_state(site.site_id, message_id)
        found = await store.batch_of_message(site.site_id, message_id)
        if state is None or found is None or found.site_id != site.site_id:
            raise AuthError(404, f"no message {message_id} of site {site.site_id}")
        if state not in ("accepted", "queued"):
            return JSONResponse(
                {
                    "message_id": message_id,
                    "state": state,
                    "cancel_requested": 0,
                    "message": f"the message has already ended ({state}): nothing to cancel",
                },
                status_code=200,
            )
        ids = await commands.cancel_message(site, found.channel, message_id, actor=who.actor)
        return JSONResponse(
            {
                "message_id": message_id,
                "state": state,
                "cancel_requested": 1,
                "message": "cancelling the message unless a provider already has it",
                "event_ids": ids,
            },
            status_code=202,
        )

    return router
