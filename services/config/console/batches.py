"""Console pages for batches: a site's batches, one batch's counts and progress, and Cancel
behind a confirmation step (a page of its own, so it works without JavaScript).

Reads and the cancel go through the JSON API in-process with the user's token, so the console
applies exactly the API's rules (tenancy, roles, what a cancel does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.config.console.common import PREFIX, PageNotFound

if TYPE_CHECKING:
    from services.config.console.app import Console
    from services.config.console.common import User


def install(console: Console, app: FastAPI) -> None:
    """Add the batch pages to the console app."""

    async def api_get(user: User, path: str) -> Any:
        assert console.api is not None, "console not mounted"
        response = await console.api.get(
            f"/api/v1{path}", headers={"Authorization": f"Bearer {user.token}"}
        )
        if response.status_code in (404, 422):
            raise PageNotFound()
        response.raise_for_status()
        return response.json()

    @app.get("/sites/{site_id}/batches")
    async def batches(request: Request, site_id: str) -> Response:
        user = await console.user(request)
        site = await console.visible_site(site_id, user.who)
        listed = await api_get(user, f"/sites/{site.site_id}/batches?limit=50")
        return console.page(
            request, "batches.html", who=user.who, user=user, site=site, nav="sites", batches=listed
        )

    @app.get("/sites/{site_id}/batches/{batch_id}")
    async def batch(request: Request, site_id: str, batch_id: str) -> Response:
        user = await console.user(request)
        site = await console.visible_site(site_id, user.who)
        shown = await api_get(user, f"/sites/{site.site_id}/batches/{batch_id}")
        return console.page(
            request,
            "batch.html",
            who=user.who,
            user=user,
            site=site,
            nav="sites",
            batch=shown,
            manages=user.who.manages_site(site.group_id, site.site_id),
            confirm=request.query_params.get("confirm") == "cancel",
            notice=request.query_params.get("notice"),
        )

    @app.post("/sites/{site_id}/batches/{batch_id}/cancel")
    async def cancel(request: Request, site_id: str, batch_id: str) -> Response:
        await console.form(request)  # checks the CSRF token
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        response = await console.api_post(
            user, f"/api/v1/sites/{site.site_id}/batches/{batch_id}/cancel"
        )
        if response.status_code in (404, 422):
            raise PageNotFound()
        response.raise_for_status()
        notice = response.json()["message"]
        return RedirectResponse(
            f"{PREFIX}/sites/{site.site_id}/batches/{batch_id}?{urlencode({'notice': notice})}",
            status_code=303,
        )
