"""The console's group dashboard (`/console/dashboard`): every site the person may see on one
page (a site manager: their sites), from `services.config.handlers.dashboard`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.config.adapters.alert_mail import TITLES
from services.config.adapters.alerts import AlertStore
from services.config.handlers import NotFound
from services.config.handlers.dashboard import dashboard
from shared.domain.accounts import sms_account_id

ACCOUNT_ALERTS = frozenset({"sms_held", "low_credit", "topup_needed"})

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
        # An SMS account's alert names the site whose send revealed it; every site sharing
        # the account is held alike, so those who see any of them see it.
        accounts = {sms_account_id(site.settings.sms.provider, site.group_id) for site, _ in sites}

        def visible(alert: dict[str, Any]) -> bool:
            if alert["site_id"] and who.sees_site(who.group_id, alert["site_id"]):
                return True
            if alert["kind"] in ACCOUNT_ALERTS and alert["key"] in accounts:
                return True
            # A group-wide alert (no site) is for those who see every site.
            return not alert["site_id"] and who.role != "site_manager"

        alerts = [
            {**a, "title": TITLES.get(a["kind"], a["kind"])}
            for a in await AlertStore(console.handlers.db).active(who.group_id)
            if visible(a)
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
