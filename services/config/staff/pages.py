"""Console pages of signing in: the sign-in form, signing out (here or everywhere), accepting
an invitation. The staff and API-token admin pages are in `admin_pages`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.config.staff import admin_pages, credentials
from services.config.staff.rules import MIN_PASSWORD, StaffRuleError
from services.config.staff.signin import Attempt, SignInRefused

if TYPE_CHECKING:
    from services.config.console.app import Console, User

log = logging.getLogger(__name__)


def install(console: Console, app: FastAPI) -> None:
    """Register the sign-in, account and invitation pages (and the admin pages)."""
    from services.config.console.app import PREFIX, client_of, safe_next

    staff = console.staff

    @app.get("/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        return console.page(request, "login.html", next=safe_next(next), error=None, who=None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await console.form(request)
        target = safe_next(str(form.get("next") or ""))
        attempt = Attempt(
            email=str(form.get("email") or "")[:320],
            password=str(form.get("password") or "")[:1024],
            code=str(form.get("code") or "")[:16],
            client=client_of(request),
        )
        try:
            account = await staff.signin.check(attempt)
        except SignInRefused as exc:
            status = 429 if exc.reason == "throttled" else 401
            response = console.page(
                request,
                "login.html",
                status=status,
                next=target,
                who=None,
                email=attempt.email,
                error=exc.message,
            )
            if exc.wait is not None:
                response.headers["Retry-After"] = str(max(1, int(exc.wait.total_seconds())))
            return response
        method = "password_totp" if account.totp_secret else "password"
        await console.sign_in(request, account, method)
        return RedirectResponse(target, status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await console.form(request)
        await console.sign_out(request)
        return RedirectResponse(f"{PREFIX}/login", status_code=303)

    @app.get("/account")
    async def account(request: Request, totp: str | None = None) -> Response:
        user = await console.user(request)
        counts = await staff.store.session_counts(user.who.group_id, staff.sessions.clock())
        return console.page(
            request,
            "account.html",
            who=user.who,
            account=user.account,
            sessions=counts.get(user.account.user_id, 0),
            nav="account",
            notice="Your authenticator app is set up." if totp else None,
        )

    @app.post("/account/sign-out-everywhere")
    async def sign_out_everywhere(request: Request) -> Response:
        user = await console.user(request)
        await console.form(request)
        await staff.sessions.end_all(
            user.account, reason="sign_out_everywhere", actor=user.who.actor
        )
        console.drafts.drop(user.session.sid)
        user.session.rotate(False)
        return console.page(
            request,
            "login.html",
            next=PREFIX + "/",
            who=None,
            error=None,
            notice="You are signed out on every device.",
        )

    @app.get("/account/authenticator")
    async def authenticator(request: Request) -> Response:
        user = await console.user(request)
        return await _authenticator_page(request, user, None)

    @app.post("/account/authenticator")
    async def authenticator_confirm(request: Request) -> Response:
        user = await console.user(request)
        form = await console.form(request)
        try:
            await staff.authenticators.confirm(user.account, str(form.get("code") or ""))
        except StaffRuleError as exc:
            return await _authenticator_page(request, user, exc.message, status=422)
        return RedirectResponse(f"{PREFIX}/account?totp=1", status_code=303)

    async def _authenticator_page(
        request: Request, user: User, error: str | None, status: int = 200
    ) -> Response:
        secret = await staff.authenticators.offer(user.account)
        uri = credentials.totp_uri(secret, user.account.email)
        return console.page(
            request,
            "authenticator.html",
            status=status,
            who=user.who,
            nav="account",
            error=error,
            totp_secret=secret,
            totp_uri=uri,
            qr=credentials.totp_qr_data_uri(uri),
        )

    @app.get("/invitation/{secret}")
    async def invitation(request: Request, secret: str) -> Response:
        return await _invitation_page(request, secret, None)

    @app.post("/invitation/{secret}")
    async def accept(request: Request, secret: str) -> Response:
        form = await console.form(request)
        try:
            await staff.accounts.accept(
                secret,
                str(form.get("password") or ""),
                str(form.get("repeat") or ""),
                str(form.get("code") or ""),
            )
        except StaffRuleError as exc:
            return await _invitation_page(request, secret, exc.message, status=422)
        return console.page(
            request,
            "login.html",
            next=PREFIX + "/",
            who=None,
            error=None,
            notice="Your account is ready. Sign in.",
        )

    async def _invitation_page(
        request: Request, secret: str, error: str | None, status: int = 200
    ) -> Response:
        try:
            enrolment = await staff.accounts.enrolment(secret)
        except StaffRuleError as exc:
            return console.page(
                request, "invitation.html", status=404, problem=exc.message, who=None
            )
        uri = credentials.totp_uri(enrolment.totp_secret, enrolment.user.email)
        return console.page(
            request,
            "invitation.html",
            status=status,
            who=None,
            problem=None,
            error=error,
            user=enrolment.user,
            secret=secret,
            required=enrolment.required,
            min_password=MIN_PASSWORD,
            totp_secret=enrolment.totp_secret,
            totp_uri=uri,
            qr=credentials.totp_qr_data_uri(uri),
        )

    admin_pages.install(console, app)
