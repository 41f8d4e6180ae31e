"""Opt-outs recorded sealed from the console and from an unsubscribe link, over plain HTTP
against the real config, audit and SMS gateway services: nothing personal in the OPTOUTS
stream's files; a group admin sees numbers and addresses opened ("erased" once erased), a site
manager and an auditor a masked form; the subject-access export downloads from the console."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from shared.bus.topology import OPTOUTS
from shared.eventstore import EventStore
from shared.privacy.shown import masked
from shared.runtime.nats_server import NatsServer
from shared.unsubscribe import UnsubscribeTokens
from tests.browser.conftest import ConsoleStack
from tests.browser.test_console_http import signed_in
from tests.support.waiting import wait_until

STORED = re.compile(r'name="recipient" value="(pd1:[^"]+)"')


def optouts_files_holding(store: Path, needles: list[bytes]) -> list[str]:
    """Files of the OPTOUTS stream in NATS's data directory holding any needle."""
    found = []
    for root in (d for d in store.rglob("streams/*") if d.name == OPTOUTS):
        for path in (p for p in root.rglob("*") if p.is_file()):
            raw = path.read_bytes()
            found += [f"{path.name}: {n!r}" for n in needles if n in raw]
    return found


async def test_opt_outs_are_sealed_opened_for_admins_masked_for_others_and_exported(
    stack: ConsoleStack, nats_server: NatsServer
) -> None:
    group = await stack.group()
    g, site = group["group_id"], group["sim_site"]
    digits = f"{random.randrange(1000):03d}"
    number = f"+447700900{digits}"  # the group's region is the UK
    address = f"unsub.{random.randrange(10**8)}@example.org"
    manager = await stack.staff(g, "site_manager", [site])
    async with signed_in(stack, group["admin_user"]) as (client, csrf):
        added = await client.post(
            "/console/optouts",
            data={"csrf_token": csrf, "channel": "sms", "recipient": number, "site_id": site},
        )
        assert added.status_code == 303, added.text
        assert number not in added.headers["location"], "the address bar gets a masked form"
        # The patient's own unsubscribe link (one click, RFC 8058).
        link = UnsubscribeTokens([stack.env["STAGGER_SECRET_KEY"].encode()]).make(g, address)
        async with stack.config.client() as anonymous:
            clicked = await anonymous.post(f"/u/{link}", data={"List-Unsubscribe": "One-Click"})
        assert clicked.status_code == 200, clicked.text

        recorded = [
            e.data
            async for e in EventStore(stack.nc, OPTOUTS).replay()
            if getattr(e.data, "group_id", None) == g
        ]
        assert len(recorded) == 2
        assert all(d.recipient.startswith("pd1:") and d.recipient_tag for d in recorded)
        assert all(d.recipient_tag in d.recipient for d in recorded)

        async def shows(*values: str) -> bool:
            page = (await client.get("/console/optouts")).text
            return all(f'<th scope="row">{v}</th>' in page for v in values)

        await wait_until(
            lambda: shows(number, address), timeout=30, message="the admin sees them opened"
        )
        # Typed as a practice manager would, nationally and with spaces.
        national = f"07700 900{digits}"
        exported = await client.post(
            "/console/privacy/export", data={"csrf_token": csrf, "recipient": national}
        )
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-disposition"].startswith("attachment;")
        assert exported.headers["content-type"].startswith("application/json")
        found = json.loads(exported.content)
        assert [c["how"] for c in found["opt_outs"]] == ["staff"]
        assert found["inbound_emails"] == []
        assert found["recipient_tag"] == recorded[0].recipient_tag

        for user in (manager, group["auditor_user"]):
            async with signed_in(stack, user) as (other, other_csrf):
                page = (await other.get("/console/optouts")).text
                assert f'<th scope="row">{masked(number)}</th>' in page, user.role
                assert number not in page and address not in page
                refused = await other.post(
                    "/console/privacy/export", data={"csrf_token": other_csrf, "recipient": number}
                )
                assert refused.status_code == 403

        erased = await client.post(
            "/console/erasures", data={"csrf_token": csrf, "recipient": number, "confirmed": "1"}
        )
        assert erased.status_code == 303
        await wait_until(
            lambda: shows("erased", address), timeout=30, message="the erased number reads erased"
        )
        # Opting the erased patient back in names the sealed value the page holds.
        page = (await client.get("/console/optouts")).text
        stored = STORED.findall(page)
        assert len(stored) == 2
        sms_row = next(v for v in stored if recorded[0].recipient_tag in v)
        back = await client.post(
            "/console/optouts/remove",
            data={"csrf_token": csrf, "channel": "sms", "recipient": sms_row, "confirmed": "1"},
        )
        assert back.status_code == 303, back.text
        await wait_until(lambda: _not_listed(client, "erased"), timeout=30, message="opted back in")

    store = nats_server.store_dir
    tag = recorded[0].recipient_tag.encode()
    assert optouts_files_holding(store, [tag]), "the search looks where the events are"
    assert optouts_files_holding(store, [number.encode(), address.encode()]) == []


async def _not_listed(client, value: str) -> bool:
    page = (await client.get("/console/optouts")).text
    return f'<th scope="row">{value}</th>' not in page
