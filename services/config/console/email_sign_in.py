"""The wizard's email "Sign-in method" fields, provider presets and the email Test button
(issue 19). Kept apart from the wizard module, which only calls in here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.config.email_test import EmailGatewayUnavailable, request_email_test
from shared.domain.email_sign_in import PRESETS

if TYPE_CHECKING:
    from services.config.console.app import Console
    from services.config.console.drafts import Draft
    from services.config.domain.aggregates import SiteState

METHODS = (
    ("password", "Password"),
    ("microsoft_365", "Microsoft 365 (app registration, OAuth 2.0)"),
    ("google_workspace", "Google Workspace (service account, OAuth 2.0)"),
    ("refresh_token", "OAuth 2.0 refresh token (consented once)"),
)

FIELD_SPECS: tuple[dict[str, Any], ...] = (
    # `forms.Field` arguments (forms builds the fields; no import back from here).
    {
        "path": "email.sign_in.method",
        "label": "Sign-in method",
        "kind": "select",
        "help": "How Stagger signs in to the SMTP and IMAP servers. Microsoft 365 and Google "
        "Workspace no longer accept plain passwords from apps.",
        "options": METHODS,
    },
    {
        "path": "email.sign_in.tenant_id",
        "label": "Tenant ID (Microsoft 365)",
        "kind": "text",
        "optional": True,
    },
    {
        "path": "email.sign_in.client_id",
        "label": "Application (client) ID",
        "kind": "text",
        "optional": True,
    },
    {"path": "email.sign_in.client_secret", "label": "Client secret", "kind": "secret"},
    {
        "path": "email.sign_in.certificate",
        "label": "Certificate and private key (PEM, instead of a client secret)",
        "kind": "secret",
    },
    {
        "path": "email.sign_in.service_account_key",
        "label": "Service account key (JSON)",
        "kind": "secret",
    },
    {"path": "email.sign_in.refresh_token", "label": "Refresh token", "kind": "secret"},
    {
        "path": "email.sign_in.token_url",
        "label": "Token URL",
        "kind": "text",
        "help": "Leave empty for Microsoft 365 and Google Workspace.",
        "optional": True,
    },
    {
        "path": "email.sign_in.user",
        "label": "Mailbox to sign in as",
        "kind": "text",
        "help": "Leave empty to use the SMTP user name or the practice address.",
        "optional": True,
    },
)


def apply_preset(
    draft: Draft, saved: dict[str, Any], before: dict[str, Any], submitted: dict[str, Any]
) -> None:
    """A newly chosen provider fills in its servers, ports, security and sign-in method,
    except fields the user changed in the same submission."""
    preset = submitted.get("email.provider_preset")
    if preset not in PRESETS or before.get("email.provider_preset") == preset:
        return
    for path, value in PRESETS[str(preset)].items():
        if path in submitted and submitted[path] != before.get(path):
            continue
        draft.set(saved, path, value)


def email_pending(draft: Draft) -> bool:
    """True when the draft changes email settings (the Test checks the saved ones)."""
    return any(p.startswith("email.") for p in [*draft.patch, *draft.secrets])


async def run_email_test(console: Console, site: SiteState, draft: Draft) -> str:
    """Ask a gateway for the email Test; keep the answer on the draft; return the flash."""
    if email_pending(draft):
        draft.email_test_result = {
            "ok": False,
            "pending": True,
            "error": "The email settings have unsaved changes. Test checks the saved settings: "
            "press Finish first, then open the wizard again and test.",
        }
        return "Finish first: the Test checks the saved settings."
    try:
        result = await request_email_test(console.handlers.nc, site.site_id)
    except EmailGatewayUnavailable:
        result = {"ok": False, "last_error": "No email gateway answered. Try again in a minute."}
    draft.email_test_result = result
    if result.get("ok"):
        return "Email test succeeded: signed in and opened the inbox and Sent folder."
    return f"Email test failed: {result.get('last_error')}"
