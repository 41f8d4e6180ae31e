"""The settings wizard, screen by screen as in the seed, writing once on Finish.

Each screen posts to itself with an `action` (next, back, +1 add, bin delete, test, finish…).
The screen's fields go into the draft, the draft is checked by the very rules a write would
apply (`aggregates.decide_site_change`, nothing appended), and errors come back keyed by the
settings' dotted paths, which are the fields' names. Finish calls `ConfigHandlers.change_site`
once, with the version the wizard started from: one `stagger.site.settings_changed` event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.config.console import views
from services.config.console.drafts import Draft
from services.config.console.email_sign_in import apply_preset, run_email_test
from services.config.console.form_parsing import parse_step, parse_window
from services.config.console.forms import (
    BY_NAME,
    STEP_NAMES,
    STEPS,
    WINDOW_PATHS,
    Step,
    field_for,
    offered,
    step_of,
)
from services.config.console.provider_fields import balance_text, for_provider
from services.config.domain import aggregates
from services.config.domain.aggregates import SiteState
from services.config.handlers import GatewayUnavailable, VersionMismatch, credit_outlook
from shared.domain.numbers import for_people
from shared.domain.planning import site_forecast
from shared.domain.site_settings import (
    SettingsError,
    SiteSettings,
    diff,
    flatten,
    warnings,
)
from shared.eventstore import ConcurrencyConflict

if TYPE_CHECKING:
    from services.config.console.app import Console
    from services.config.console.common import User

log = logging.getLogger(__name__)

# Stands in for a secret typed into the draft while the draft is only being checked.
DRAFT_SECRET = "enc:v1:console-draft"
LOCK_PATH = "sms.provider.locked"


@dataclass
class Preview:
    """The draft as the settings model sees it."""

    settings: SiteSettings
    changes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def flat(site: SiteState) -> dict[str, Any]:
    """A site's saved settings as {dotted path: value}."""
    return flatten(site.settings.model_dump(mode="json"))


async def preview(console: Console, site: SiteState, draft: Draft) -> Preview:
    """Check the draft with the same decision a write makes, without writing."""
    patch = dict(draft.patch)
    for path in draft.secrets:
        patch[path] = DRAFT_SECRET
    group = await console.handlers.group(site.group_id)
    try:
        data = aggregates.decide_site_change(site, group, patch, [])
    except SettingsError as exc:
        return Preview(site.settings, [], warnings(site.settings), dict(exc.errors))
    if data is None:
        return Preview(site.settings, [], warnings(site.settings))
    return Preview(
        data.settings,
        [c.model_dump() for c in data.changes],
        [w.model_dump() for w in data.warnings],
    )


def provider_pending(draft: Draft) -> bool:
    """True when the draft changes the provider (Test checks the saved settings)."""
    return any(p.startswith("sms.provider.") for p in [*draft.patch, *draft.secrets])


async def rebase_after_lock(console: Console, draft: Draft, before: SiteState) -> None:
    """A provider test/unlock moves the version; follow it if nothing else changed."""
    if draft.base_version != before.version:
        return
    after = await console.handlers.site(before.site_id)
    if after.version == before.version:
        return
    changed = {path for path, _, _ in diff(before.settings, after.settings)}
    if changed <= {LOCK_PATH}:
        draft.base_version = after.version


def _problem_text(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    errors = body.get("errors") or []
    if errors:
        return "; ".join(f"{e.get('message')}" for e in errors)
    return str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")


def install(console: Console, app: FastAPI) -> None:
    """Register the wizard's routes."""
    from services.config.console.common import PREFIX, PageNotFound

    def step_url(site_id: str, step: str) -> str:
        return f"{PREFIX}/sites/{site_id}/wizard/{step}"

    async def open_draft(user: User, site: SiteState) -> Draft:
        draft = console.drafts.get(user.session.sid, site.site_id)
        if draft is None:
            draft = console.drafts.start(user.session.sid, site.site_id, site.version)
        return draft

    def other_errors(errors: dict[str, str], step: Step) -> list[dict[str, str]]:
        out = []
        for path, message in errors.items():
            if step.owns(path) or path.startswith("new."):
                continue
            owner = step_of(path)
            f = field_for(path)
            out.append(
                {
                    "step": owner.name if owner else "finish",
                    "step_title": owner.title if owner else "",
                    "label": f.label if f else path,
                    "field_id": f.id if f else "",
                    "message": message,
                }
            )
        return out

    async def render(
        request: Request,
        user: User,
        site: SiteState,
        draft: Draft,
        step: Step,
        *,
        errors: dict[str, str] | None = None,
        status: int = 200,
        flash: str | None = None,
        conflict: bool = False,
        view: Preview | None = None,
    ) -> Response:
        step = offered(step, simulator_enabled=console.settings.sms_simulator_enabled)
        saved = flat(site)
        values = draft.values(saved)
        if step.name == "provider":  # just the chosen provider's fields, named its way
            step = for_provider(step, values.get("sms.provider.kind"))
        view = view or await preview(console, site, draft)
        all_errors = {**view.errors, **(errors or {})}
        here = {p: m for p, m in all_errors.items() if step.owns(p) or p.startswith("new.")}
        field_errors: dict[str, str] = {}
        for path, message in here.items():
            f = field_for(path)
            key = path if path.startswith("new.") or f is None else f.path
            field_errors.setdefault(key, message)
        field_warnings: dict[str, list[str]] = {}
        for w in view.warnings:
            f = field_for(w["field"])
            if f is not None:
                field_warnings.setdefault(f.path, []).append(w["message"])
        secrets_set = {
            f.path: bool(saved.get(f.path)) or f.path in draft.secrets
            for s in STEPS
            for f in s.fields
            if f.kind == "secret"
        }
        forecast = None
        if step.name == "sms" and not view.errors:
            forecast = site_forecast(
                view.settings,
                "sms",
                draft.forecast_messages,
                0,
                draft.forecast_days,
                site_id=site.site_id,
            )
            if site.settings.sms.provider.kind != "none":
                forecast["credits"] = await credit_outlook.for_forecast(
                    console.nc, site, draft.forecast_messages, 0
                )
        index = STEP_NAMES.index(step.name)
        return console.page(
            request,
            "wizard.html",
            status=status,
            who=user.who,
            user=user,
            nav="sites",
            site=site,
            draft=draft,
            step=step,
            index=index,
            values=values,
            saved=saved,
            errors=field_errors,
            error_summary=here,
            other_errors=other_errors(all_errors, step),
            field_warnings=field_warnings,
            warnings=view.warnings,
            changes=view.changes,
            secrets_set=secrets_set,
            locked=site.settings.sms.provider.locked,
            forecast=forecast,
            stale=site.version != draft.base_version or conflict,
            conflict=conflict,
            flash=flash,
            test_result=draft.test_result,
            email_test_result=draft.email_test_result,
            provider_pending=provider_pending(draft),
            is_admin=user.who.administers_group(site.group_id),
            window_paths=WINDOW_PATHS,
        )

    @app.get("/sites/{site_id}/wizard")
    async def wizard_start(request: Request, site_id: str) -> Response:
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        await open_draft(user, site)
        return RedirectResponse(step_url(site_id, STEP_NAMES[0]), status_code=303)

    @app.post("/sites/{site_id}/wizard/restart")
    async def wizard_restart(request: Request, site_id: str) -> Response:
        await console.form(request)
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        console.drafts.drop(user.session.sid, site_id)
        console.drafts.start(user.session.sid, site_id, site.version)
        return RedirectResponse(step_url(site_id, STEP_NAMES[0]), status_code=303)

    @app.post("/sites/{site_id}/wizard/cancel")
    async def wizard_cancel(request: Request, site_id: str) -> Response:
        await console.form(request)
        user = await console.user(request)
        await console.managed_site(site_id, user.who)
        console.drafts.drop(user.session.sid, site_id)
        return RedirectResponse(f"{PREFIX}/sites/{site_id}", status_code=303)

    @app.get("/sites/{site_id}/wizard/{step_name}")
    async def wizard_step(request: Request, site_id: str, step_name: str) -> Response:
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        step = BY_NAME.get(step_name)
        if step is None:
            raise PageNotFound()
        draft = await open_draft(user, site)
        flash, draft.flash = draft.flash, None
        return await render(request, user, site, draft, step, flash=flash)

    @app.post("/sites/{site_id}/wizard/{step_name}")
    async def wizard_post(request: Request, site_id: str, step_name: str) -> Response:
        form = await console.form(request)
        user = await console.user(request)
        site = await console.managed_site(site_id, user.who)
        step = BY_NAME.get(step_name)
        if step is None:
            raise PageNotFound()
        draft = await open_draft(user, site)
        async with draft.lock:  # one post at a time per draft (autosave vs Next)
            site = await console.managed_site(site_id, user.who)
            return await handle(request, form, user, site, step, draft)

    async def handle(
        request: Request, form: Any, user: User, site: SiteState, step: Step, draft: Draft
    ) -> Response:
        site_id = site.site_id
        saved = flat(site)
        locked = (
            frozenset({"sms.provider.account_id"})
            if site.settings.sms.provider.locked
            else frozenset()
        )
        shown = offered(step, simulator_enabled=console.settings.sms_simulator_enabled)
        values, typed, errors = parse_step(shown, form, locked_paths=locked)
        before = draft.values(saved)
        for path, value in values.items():
            draft.set(saved, path, value)
        apply_preset(draft, saved, before, values)  # issue 19: provider presets
        for path, text in typed.items():
            draft.secrets[path] = console.codec.seal(text)
        if step.name == "sms":
            for name, attr, top in (
                ("forecast.messages", "forecast_messages", 10_000_000),
                ("forecast.days", "forecast_days", 366),
            ):
                raw = str(form.get(name) or "").strip()
                if raw:
                    if raw.isdigit() and 1 <= int(raw) <= top:
                        setattr(draft, attr, int(raw))
                    else:
                        errors[f"new.{name}"] = f"enter a whole number from 1 to {for_people(top)}"
        action = str(form.get("action") or "save")
        flash: str | None = None

        if action.startswith(("add:", "delete:")):
            verb, _, rest = action.partition(":")
            path, _, window_id = rest.partition(":")
            if path not in WINDOW_PATHS or not step.owns(path):
                raise PageNotFound()
            current = list(draft.values(saved)[path] or [])
            if verb == "add":
                days = [str(d) for d in form.getlist(f"new.{path}.days")]
                window, problems = parse_window(form, path, days)
                if problems:
                    errors.update(problems)
                else:
                    before = draft.patch.get(path, ...)
                    draft.set(saved, path, [*current, window])
                    check = await preview(console, site, draft)
                    clash = {p: m for p, m in check.errors.items() if p == path}
                    if clash:
                        if before is ...:
                            draft.patch.pop(path, None)
                        else:
                            draft.patch[path] = before
                        errors[f"new.{path}"] = next(iter(clash.values()))
                    else:
                        flash = f"Added {views.describe_window(window)}."
            else:
                kept = []
                removed = None
                for w in current:
                    if views.window_id(w) == window_id and removed is None:
                        removed = w
                    else:
                        kept.append(w)
                if removed is None:
                    flash = "That entry was already deleted."
                else:
                    draft.set(saved, path, kept)
                    flash = f"Deleted {views.describe_window(removed)}."
        elif action == "test" and step.name == "provider":
            flash = await provider_test(user, site, draft)
            site = await console.handlers.site(site_id)  # a successful test locks the account
        elif action == "email-test" and step.name == "account":  # issue 19
            flash = await run_email_test(console, site, draft)
        elif action == "unlock" and step.name == "provider":
            flash = await unlock(user, site, draft)
            site = await console.handlers.site(site_id)

        view = await preview(console, site, draft)
        if action == "finish" and step.name == "finish":
            return await finish(request, user, site, draft, view)

        here = {**{p: m for p, m in view.errors.items() if step.owns(p)}, **errors}
        if console.partial(request):
            return await render(
                request,
                user,
                site,
                draft,
                step,
                errors=errors,
                status=422 if here else 200,
                flash=flash,
                view=view,
            )
        target: str | None = None
        index = STEP_NAMES.index(step.name)
        if action == "next" and index + 1 < len(STEP_NAMES):
            target = STEP_NAMES[index + 1]
        elif action == "back" and index > 0:
            target = STEP_NAMES[index - 1]
        elif action.startswith("goto:") and action[5:] in BY_NAME:
            target = action[5:]
        if here and (target is None or STEP_NAMES.index(target) > index or errors):
            return await render(
                request, user, site, draft, step, errors=errors, status=422, flash=flash, view=view
            )
        if flash:
            draft.flash = flash
        return RedirectResponse(step_url(site_id, target or step.name), status_code=303)

    async def provider_test(user: User, site: SiteState, draft: Draft) -> str:
        if provider_pending(draft):
            draft.test_result = {
                "ok": False,
                "pending": True,
                "error": "The provider settings have unsaved changes. Test checks the saved "
                "settings: press Finish first, then open the wizard again and test.",
            }
        elif site.settings.sms.provider.kind == "none":
            draft.test_result = {"ok": False, "error": "No SMS provider is selected."}
        else:
            try:
                body = await console.handlers.provider_test(site, actor=user.who.actor)
                draft.test_result = {
                    "ok": bool(body.get("ok")),
                    "balance": body.get("balance"),
                    "unit": body.get("unit"),
                    "currency": body.get("currency"),
                    "postpaid": bool(body.get("postpaid")),
                    "error": body.get("error"),
                }
                if draft.test_result["ok"]:
                    draft.test_result["shown"] = balance_text(draft.test_result)
                if isinstance(second := body.get("secondary"), dict):
                    draft.test_result["secondary"] = (
                        f"secondary account: {balance_text(second)}"
                        if second.get("ok")
                        else f"secondary account failed: {second.get('error')}"
                    )
                if draft.test_result["ok"]:
                    await rebase_after_lock(console, draft, site)
            except GatewayUnavailable:
                draft.test_result = {
                    "ok": False,
                    "error": "No SMS gateway answered the test. Try again in a minute.",
                }
            except SettingsError as exc:
                draft.test_result = {"ok": False, "error": "; ".join(exc.errors.values())}
        result = draft.test_result
        also = f" ({result['secondary']})" if result.get("secondary") else ""
        if result.get("ok"):
            return f"Test succeeded: {result.get('shown')}{also}."
        return f"Test failed: {result.get('error')}{also}"

    async def unlock(user: User, site: SiteState, draft: Draft) -> str:
        response = await console.api_post(user, f"/api/v1/sites/{site.site_id}/provider-unlock")
        if response.status_code != 200:
            return f"Could not unlock: {_problem_text(response)}"
        await rebase_after_lock(console, draft, site)
        draft.test_result = None
        return "The Practice ID is unlocked and can be changed."

    async def finish(
        request: Request, user: User, site: SiteState, draft: Draft, view: Preview
    ) -> Response:
        step = BY_NAME["finish"]
        if view.errors:
            return await render(request, user, site, draft, step, status=422, view=view)
        patch = dict(draft.patch)
        for path, sealed in draft.secrets.items():
            patch[path] = console.codec.open(sealed)
        try:
            outcome = await console.handlers.change_site(
                site.site_id,
                draft.base_version,
                patch,
                [],
                actor=user.who.actor,
                note="console setup wizard",
                flat=True,
            )
        except (VersionMismatch, ConcurrencyConflict):
            return await render(
                request, user, site, draft, step, status=409, conflict=True, view=view
            )
        except SettingsError as exc:
            return await render(
                request, user, site, draft, step, status=422, errors=dict(exc.errors), view=view
            )
        console.drafts.drop(user.session.sid, site.site_id)
        query = (
            {"saved": outcome.version, "changes": len(outcome.changes)}
            if outcome.changed
            else {"unchanged": 1}
        )
        return RedirectResponse(
            f"{PREFIX}/sites/{site.site_id}?{urlencode(query)}", status_code=303
        )
