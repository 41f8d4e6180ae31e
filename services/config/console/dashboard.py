"""The console's group dashboard (`/console/dashboard`): every site the person may see on one
page (a site manager: their sites), from `services.config.handlers.dashboard`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.config.adapters.alert_mail import TITLES
from services.config.adapters.alerts import AlertStore
from services.config.handlers import NotFound
from services.config.handlers.dashboard import dashboard

if TYPE_CHECKING:
    from services.config.console.app import Console


def install(console: Console, app: FastAPI) -> None:
    """Add the dashboard page to the console app."""

    @app.get("/dashboard")
    async def group_dashboard(request: Request) -> Response:
        user = await console.user(request)
        sites = []
        for row in await console.visible_sites(user.who):
            try:
                sites.append((await console.handlers.site(row["site_id"]), row["warnings"]))
            except NotFound:
                continue
        rows = await dashboard(console.nc, console.handlers.db, sites)
        who = user.who
        alerts = [
            {**a, "title": TITLES.get(a["kind"], a["kind"])}
            for a in await AlertStore(console.handlers.db).active(who.group_id)
            # A site's alert for those who see the site; a group-wide one (no site) for
            # those who see every site.
            if (
                who.sees_site(who.group_id, a["site_id"])
                if a["site_id"]
                else who.role != "site_manager"
            )
        ]
        return console.page(
            request,
            "dashboard.html",
            who=who,
            user=user,
            nav="dashboard",
            rows=rows,
            alerts=alerts,
        )
