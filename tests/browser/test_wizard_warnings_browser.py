"""The wizard's two scheduling warnings end to end, in headless Chromium: preset check times
("not recommended") and a backup window that overlaps a send session. Each shows next to its
field while editing, on the Finish screen, and, once saved, on the site's page and in the API's
answer; neither stops Finish (warnings warn, they never refuse)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import ConsoleStack, login, screenshot

pytestmark = pytest.mark.browser

PRESET = "preset check times are not recommended; use the interval"
# The email sessions are the default Mon-Fri 08:00-18:00; the backup window sits inside Monday's.
OVERLAP = "session Mon–Fri 08:00–18:00 overlaps the blackout Mon 10:00–11:00"


async def test_preset_times_and_an_overlapping_backup_window_are_warned_about(
    stack: ConsoleStack, page: Page
) -> None:
    group = await stack.group()
    site = group["site"]
    async with stack.config.client(group["admin"]) as api:
        before = (await api.get(f"/api/v1/sites/{site}")).json()
    assert not any(w["field"] == "email.preset_times" for w in before.get("warnings", []))

    await login(page, stack.url, group["admin_user"])
    await page.goto(f"{stack.url}/console/sites/{site}/wizard/schedule")
    await page.get_by_label("Preset check times (not recommended)").fill("08:00, 13:00")
    backup = page.get_by_role("group", name="Backup window (nothing is sent)")
    await backup.get_by_label("Mon").check()
    await backup.get_by_label("From").fill("10:00")
    await backup.get_by_label("To").fill("11:00")
    await backup.get_by_role("button", name="+1: add this window").click()
    await expect(backup.get_by_text("Mon 10:00–11:00")).to_be_visible()

    # The screen again, from the draft: each warning beside its field.
    await page.reload()
    await expect(page.locator("#f-email-preset-times-warn")).to_have_text(PRESET)
    sessions = page.get_by_role("group", name="Send and receive sessions")
    await expect(sessions.locator("p.warning")).to_contain_text(OVERLAP)
    await screenshot(page, "wizard-schedule-warnings")

    await page.goto(f"{stack.url}/console/sites/{site}/wizard/finish")
    await expect(page.get_by_text(PRESET)).to_be_visible()
    await expect(page.get_by_text(OVERLAP, exact=False).first).to_be_visible()
    await page.get_by_role("button", name="Finish").click()
    await expect(page.get_by_role("heading", name="Warnings")).to_be_visible()
    warnings = page.locator("#warn-h + ul")
    await expect(warnings).to_contain_text(PRESET)
    await expect(warnings).to_contain_text(OVERLAP)
    await screenshot(page, "site-warnings-saved")

    async with stack.config.client(group["admin"]) as api:
        after = (await api.get(f"/api/v1/sites/{site}")).json()
    saved = {(w["field"], w["message"]) for w in after["warnings"]}
    assert ("email.preset_times", PRESET) in saved
    assert any(f == "email.sessions" and OVERLAP in m for f, m in saved), saved
    assert after["settings"]["email"]["preset_times"] == ["08:00", "13:00"]
