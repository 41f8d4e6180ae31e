"""The email **Test** on a site's page (issue 22): for those who manage the site, a button beside
the email settings that signs in to the *saved* SMTP (and IMAP) servers and shows the answer.

It calls the JSON API's own `POST /api/v1/sites/{site}/email-test` in-process with the user's
token, so the console applies the API's rules (who may test, which gateway answers). Nothing is
sent and nothing is saved; the page is rendered straight from the POST, so the result shows
without JavaScript.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from services.config.console.common import PageNotFound

if TYPE_CHECKING:
    from services.config.console.app import Console

NO_GATEWAY = "No email gateway answered. Try again in a minute."


def install(console: Console, app: FastAPI) -> None:
    """Add the site page's email Test to the console app."""

    @app.post("/sites/{site_id}/email-test")
    async def email_test(request: Request, site_id: str) -> Response:
        await console.form(request)  # checks the CSRF token first
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        response = await console.api_post(user, f"/api/v1/sites/{site.site_id}/email-test")
        if response.status_code in (404, 422):
            raise PageNotFound()
        result: dict[str, Any]
        if response.status_code == 503:
            result = {"ok": False, "last_error": NO_GATEWAY}
        else:
            response.raise_for_status()
            result = response.json()
        return console.page(
            request,
            "site.html",
            who=user.who,
            user=user,
            site=site,
            nav="sites",
            manages=True,
            summary=console.settings_summary(site),
            warnings=console.warnings_of(site),
            email_test_result=result,
        )
