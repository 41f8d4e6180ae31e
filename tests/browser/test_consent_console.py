"""The console shows consent categories: on the opt-out list (and its form) and on a
message's page, read from the audit trail."""

from __future__ import annotations

import re

from tests.browser.conftest import ConsoleStack
from tests.browser.test_console_http import signed_in
from tests.support.waiting import wait_until


def row_of(page: str, recipient: str) -> str:
    found = re.search(rf"<tr><th scope=\"row\">{re.escape(recipient)}</th>(.*?)</tr>", page, re.S)
    assert found, f"{recipient} not listed"
    return found.group(1)


async def test_opt_outs_show_their_category_and_a_message_page_its_consent_category(
    stack: ConsoleStack,
) -> None:
    group = await stack.group()
    async with signed_in(stack, group["admin_user"]) as (client, csrf):
        page = (await client.get("/console/optouts")).text
        assert '<option value="marketing">marketing only</option>' in page
        for number, category in (("07700 900321", "marketing"), ("07700 900322", "")):
            added = await client.post(
                "/console/optouts",
                data={"csrf_token": csrf, "channel": "sms", "recipient": number,
                      "category": category, "site_id": group["sim_site"]},
            )  # fmt: skip
            assert added.status_code == 303, added.text
        unknown = await client.post(
            "/console/optouts",
            data={"csrf_token": csrf, "channel": "sms", "recipient": "07700 900323",
                  "category": "promo", "site_id": group["sim_site"]},
        )  # fmt: skip
        assert unknown.status_code == 422 and "consent categories" in unknown.text
        page = (await client.get("/console/optouts")).text
        assert '<td class="consent">marketing</td>' in row_of(page, "+447700900321")
        assert '<td class="consent">every category</td>' in row_of(page, "+447700900322")

        async with stack.config.client(group["admin"]) as api:
            sent = await api.post(
                f"/api/v1/sites/{group['sim_site']}/messages",
                json={"channel": "sms", "messages": [
                    {"to": "07700 900330", "body": "Your recall is due", "category": "recall"}
                ]},
            )  # fmt: skip
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["messages"][0]["message_id"]

        async def shown() -> bool:
            text = (await client.get(f"/console/messages/{message_id}")).text
            return '<dd id="message-consent">marketing</dd>' in text

        await wait_until(shown, timeout=30, message="the message page shows its category")
