"""The wizard's provider presets for email (issue 19)."""

from __future__ import annotations

from services.config.console.drafts import Draft
from services.config.console.email_sign_in import apply_preset, email_pending
from services.config.console.forms import BY_NAME


def test_choosing_microsoft_365_fills_servers_and_sign_in_but_keeps_typed_fields() -> None:
    saved = {"email.provider_preset": "custom", "email.smtp.host": None, "email.smtp.port": 587}
    draft = Draft(site_id="s", base_version=1)
    before = draft.values(saved)
    submitted = {"email.provider_preset": "microsoft_365", "email.imap.host": "imap.mine.example"}
    for path, value in submitted.items():
        draft.set(saved, path, value)
    apply_preset(draft, saved, before, submitted)
    values = draft.values(saved)
    assert values["email.smtp.host"] == "smtp.office365.com"
    assert values["email.smtp.security"] == "starttls"
    assert values["email.sign_in.method"] == "microsoft_365"
    assert values["email.imap.sent_folder"] == "Sent Items"
    assert values["email.imap.host"] == "imap.mine.example", "typed in the same submission"
    assert "email.smtp.port" not in draft.patch, "equal to the saved value: not a change"
    assert email_pending(draft)


def test_an_unchanged_preset_does_not_overwrite_edits() -> None:
    saved = {"email.provider_preset": "google_workspace", "email.smtp.host": "relay.example"}
    draft = Draft(site_id="s", base_version=1)
    before = draft.values(saved)
    apply_preset(draft, saved, before, {"email.provider_preset": "google_workspace"})
    assert draft.patch == {}
    assert not email_pending(draft)


def test_the_account_screen_offers_the_sign_in_fields() -> None:
    paths = [f.path for f in BY_NAME["account"].fields]
    assert paths[17:] == [
        "email.sign_in.method",
        "email.sign_in.tenant_id",
        "email.sign_in.client_id",
        "email.sign_in.client_secret",
        "email.sign_in.certificate",
        "email.sign_in.service_account_key",
        "email.sign_in.refresh_token",
        "email.sign_in.token_url",
        "email.sign_in.user",
    ]
    assert paths[16] == "email.imap.sent_folder"
