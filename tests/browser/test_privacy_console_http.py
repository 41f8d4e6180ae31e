"""The console's erasure form over plain HTTP: group admins only, confirmed, idempotent."""

from __future__ import annotations

import httpx

from tests.browser.conftest import ConsoleStack
from tests.browser.test_console_http import signed_in

PATIENT = "+61412000777"


async def test_a_group_admin_erases_a_patient_once_and_an_auditor_cannot(
    stack: ConsoleStack,
) -> None:
    group = await stack.group()
    async with httpx.AsyncClient(
        base_url=stack.url, headers={"Authorization": f"Bearer {group['admin']}"}, timeout=30
    ) as api:
        sent = await api.post(
            f"/api/v1/sites/{group['sim_site']}/messages",
            json={"channel": "sms", "messages": [{"to": PATIENT, "body": "See you Monday"}]},
        )
        assert sent.status_code == 202, sent.text
    async with signed_in(stack, group["auditor_user"]) as (client, csrf):
        refused = await client.post(
            "/console/erasures", data={"csrf_token": csrf, "recipient": PATIENT, "confirmed": "1"}
        )
        assert refused.status_code == 403
    async with signed_in(stack, group["admin_user"]) as (client, csrf):
        page = await client.get("/console/optouts")
        assert "Erase a patient" in page.text
        unconfirmed = await client.post(
            "/console/erasures", data={"csrf_token": csrf, "recipient": PATIENT}
        )
        assert unconfirmed.status_code == 422 and "tick the box" in unconfirmed.text
        first = await client.post(
            "/console/erasures", data={"csrf_token": csrf, "recipient": PATIENT, "confirmed": "1"}
        )
        assert first.status_code == 303 and "erased=1" in first.headers["location"]
        assert "personal data was erased" in (await client.get(first.headers["location"])).text
        again = await client.post(
            "/console/erasures", data={"csrf_token": csrf, "recipient": PATIENT, "confirmed": "1"}
        )
        assert "already_erased=1" in again.headers["location"]
