"""Tenants never meet: replies, receipts and provider accounts belong to exactly one group.

Real NATS, SQLite and PostgreSQL, the SMS provider simulator over HTTP and a gateway replica
(`tests/integration/sms_gateway/harness.py`); the config API as a real process for the 409.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from typer.testing import CliRunner

from services.cli.main import app as cli
from services.sms_gateway.adapters import tables, unrouted
from shared.bus.topology import DEADLETTER, DISPATCH, INBOUND, OPTOUTS
from shared.secrets import SecretBox, generate_key
from tests.integration.config.conftest import ConfigHarness
from tests.integration.dispatch.harness import send_tick
from tests.integration.sms_gateway.harness import (
    SENDER,
    Sim,
    SimAccount,
    at_least,
    events,
    gateway_running,
    make_site,
    number,
    opened_replies,
    submit,
    terminal,
    wait_queued,
    wait_terminal,
    webhook_url,
)
from tests.integration.sms_provider_sim.harness import SimProcess, simulator_running
from tests.support.processes import service_env, start_service
from tests.support.waiting import wait_until

SUPPRESSED, SENT = "stagger.dispatch.suppressed", "stagger.dispatch.sent"


@pytest.fixture(scope="module")
async def sim_process(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimProcess]:
    """The simulator, as a real process on a free port."""
    async with simulator_running(
        tmp_path_factory.mktemp("attribution-sim"), STAGGER_SIM_RECEIPT_DELAY_SECONDS="0.3"
    ) as process:
        yield process


@pytest.fixture
def sim(sim_process: SimProcess) -> Sim:
    return Sim(sim_process.url)


async def send_one(nc: Client, gw: Any, site: dict[str, str], to: str, prefix: str) -> str:
    """Submit one message, release it and wait until it is sent (or ends otherwise)."""
    [message] = await submit(nc, site["site"], 1, prefix=prefix, to=to)
    await wait_queued(gw, 1)
    await send_tick(nc, site["site"], budget=1)
    await wait_terminal(nc, [message])
    return message


async def opt_outs(nc: Client) -> list[Any]:
    return [e.data for e in await events(nc, OPTOUTS)]


async def replies(nc: Client) -> list[Any]:
    return await opened_replies(nc)


async def test_stop_on_one_groups_account_opts_out_that_group_only(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    """The bug report: two groups, each its own simulator account, one sender number, one
    patient. B wrote last; the patient texts STOP on A's account."""
    patient = number(41)
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        account_a = await sim.account(webhook=webhook_url(gw))
        account_b = await sim.account(webhook=webhook_url(gw))
        a = await make_site(nc, sim, account_a, mode="staggered")
        b = await make_site(nc, sim, account_b, mode="staggered")
        assert a["group"] != b["group"]
        first_a = await send_one(nc, gw, a, patient, "a1")
        await send_one(nc, gw, b, patient, "b1")
        await sim.reply(account_a, patient, "STOP", to=SENDER)
        await wait_until(lambda: at_least(nc, OPTOUTS, 1), timeout=20, message="the opt-out")
        later_a = await submit(nc, a["site"], 1, prefix="a2", to=patient)
        later_b = await submit(nc, b["site"], 1, prefix="b2", to=patient)
        await wait_queued(gw, 2)
        await send_tick(nc, a["site"], budget=1)
        await send_tick(nc, b["site"], budget=1)
        await wait_terminal(nc, later_a + later_b)
    assert [(d.group_id, d.keyword) for d in await opt_outs(nc)] == [(a["group"], "STOP")]
    [reply] = await replies(nc)
    assert (reply.site_id, reply.in_reply_to, reply.kind) == (a["site"], first_a, "optout")
    ends = await terminal(nc)
    assert ends[later_a[0]][0].type == SUPPRESSED, "A's patient opted out of A"
    assert ends[later_b[0]][0].type == SENT, "B's next message is still delivered"
    assert later_b[0] in {s["reference"] for s in await sim.submissions(account_b)}
    assert later_a[0] not in {s["reference"] for s in await sim.submissions(account_a)}


async def test_in_reply_to_naming_another_accounts_message_is_not_used(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    patient, neighbour = number(42), number(43)
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        account_a = await sim.account(webhook=webhook_url(gw))
        account_b = await sim.account(webhook=webhook_url(gw))
        a = await make_site(nc, sim, account_a, mode="staggered")
        b = await make_site(nc, sim, account_b, mode="staggered")
        to_patient_a = await send_one(nc, gw, a, patient, "a1")
        to_patient_b = await send_one(nc, gw, b, patient, "b1")
        to_neighbour_b = await send_one(nc, gw, b, neighbour, "b2")
        # Through B's account, naming A's message: the link is ignored, B's own message wins.
        await sim.reply(account_b, patient, "STOP", in_reply_to=to_patient_a)
        await wait_until(lambda: at_least(nc, INBOUND, 1), timeout=20, message="the reply")
        # Through B's account, naming B's message to someone else: ignored as well.
        await sim.reply(account_b, patient, "Yes", in_reply_to=to_neighbour_b)
        await wait_until(lambda: at_least(nc, INBOUND, 2), timeout=20, message="both replies")
    got = {r.body: (r.group_id, r.site_id, r.in_reply_to) for r in await replies(nc)}
    assert got == {
        "STOP": (b["group"], b["site"], to_patient_b),
        "Yes": (b["group"], b["site"], to_patient_b),
    }
    assert [d.group_id for d in await opt_outs(nc)] == [b["group"]]


async def test_a_receipt_from_another_account_does_not_settle_our_message(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    patient = number(44)
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        # A's own receipts are not delivered yet: only the other account's could settle it.
        account_a = await sim.account(webhook=None)
        account_b = await sim.account(webhook=webhook_url(gw))
        a = await make_site(nc, sim, account_a, mode="staggered")
        await make_site(nc, sim, account_b, mode="staggered")
        ours = await send_one(nc, gw, a, patient, "a1")
        # The other tenant's account submits a message whose reference is our message id;
        # the simulator then sends that account's signed receipt naming our id.
        forged = await _send_as(sim, account_b, reference=ours, to=patient)
        await wait_until(
            lambda: _answered(sim, forged), timeout=30, message="the other account's receipt"
        )
        assert await _receipt_of(gw, ours) is None
        # The real account's receipts do settle messages (same route, same gateway).
        await sim.update(account_a, webhook_url=webhook_url(gw))
        second = await send_one(nc, gw, a, patient, "a2")
        await wait_until(
            lambda: _delivered(nc, second), timeout=30, message="A's own receipt for A's message"
        )
        assert await _receipt_of(gw, ours) is None
    assert ours not in await _delivered_ids(nc)


async def test_an_ambiguous_reply_is_kept_unrouted_with_its_reason_and_opts_nobody_out(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    patient, stranger = number(45), number(46)
    elsewhere = "+61491570111"
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        shared = await sim.account(webhook=webhook_url(gw))
        own = await sim.account(webhook=webhook_url(gw))
        # Two groups on one account, as a store written before the config service refused
        # it could hold (the harness writes settings without the config API's check).
        a = await make_site(nc, sim, shared, mode="staggered")
        b = await make_site(nc, sim, shared, mode="staggered")
        c = await make_site(nc, sim, own, mode="staggered")
        await send_one(nc, gw, a, patient, "a1")
        await sim.reply(shared, patient, "STOP", to=SENDER)
        # One group's account, but a number none of its sites sends from, and a sender it
        # never wrote to: the group is known, yet nothing says this is a patient of it.
        await sim.reply(own, stranger, "STOP", to=elsewhere)

        async def both_kept() -> list[dict[str, Any]] | None:
            rows = await unrouted.listing(gw.ctx.db)
            return rows if len(rows) == 2 else None

        await wait_until(lambda: at_least(nc, DEADLETTER, 2), timeout=20, message="dead letters")
        rows = await wait_until(both_kept, timeout=20, message="two unrouted replies")
        listed = await asyncio.to_thread(_cli_listing, database_url, tmp_path)
    unknown_number = (
        "no site of this account sends from the number written to, "
        "and none of its messages went to the sender"
    )
    assert {(r["account_id"], r["code"], r["reason"]) for r in rows} == {
        (shared.name, "shared_account", "sites of 2 groups send through this simulator account"),
        (own.name, "unknown_number", unknown_number),
    }
    assert {(r["from_number"], r["to_number"], r["body"]) for r in rows} == {
        (patient, SENDER, "STOP"),
        (stranger, elsewhere, "STOP"),
    }
    assert {(r["account_id"], r["code"]) for r in listed} == {
        (shared.name, "shared_account"),
        (own.name, "unknown_number"),
    }
    assert await opt_outs(nc) == [], "no opt-out is applied to a guessed group"
    assert await replies(nc) == []
    reasons = sorted(e.data.reason for e in await events(nc, DEADLETTER))  # type: ignore[attr-defined]
    assert reasons == sorted(
        [
            f"reply not attributed: {unknown_number}",
            "reply not attributed: sites of 2 groups send through this simulator account",
        ]
    )
    text = json.dumps(listed)
    assert all(g not in text for g in (a["group"], b["group"], c["group"]))


async def test_a_provider_account_of_another_group_is_refused_with_409(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    key = generate_key()
    env = service_env(nats_url, tmp_path / "var", database_url, {"STAGGER_SECRET_KEY": key})
    service = start_service("config", env)
    try:
        config = ConfigHarness(service, nc, env, SecretBox([key.encode()]))
        sid = f"AC{uuid.uuid4().hex}"
        twilio = {"kind": "twilio", "account_id": sid, "secret": "token-of-group-a"}
        group_a = await config.create_group("Group A")
        admin_a = await config.token(group_a, "group_admin")
        site_a = await config.create_site(admin_a, group_a, settings={"sms": {"provider": twilio}})
        group_b = await config.create_group("Group B")
        admin_b = await config.token(group_b, "group_admin")
        site_b = (await config.create_site(admin_b, group_b))["site_id"]
        manager_b = await config.token(group_b, "site_manager", [site_b])
        # The check reads the read model: wait until it has both groups' sites.
        await _listed(config, admin_a, group_a, site_a["site_id"])
        await _listed(config, admin_b, group_b, site_b)
        copied = {**twilio, "secret": "token-of-group-b"}
        before = await config.stream_count()
        async with config.client(manager_b) as api:
            current = await api.get(f"/api/v1/sites/{site_b}")
            refused = await api.patch(
                f"/api/v1/sites/{site_b}/settings",
                json={"set": {"sms": {"provider": copied}}},
                headers={"If-Match": current.headers["ETag"]},
            )
        async with config.client(admin_b) as api:
            new_site = await api.post(
                f"/api/v1/groups/{group_b}/sites",
                json={
                    "site_id": f"s-{secrets.token_hex(4)}",
                    "name": "Copycat",
                    "settings": {"sms": {"provider": copied}},
                },
            )
            group = await api.get(f"/api/v1/groups/{group_b}")
            defaults = await api.patch(
                f"/api/v1/groups/{group_b}/defaults",
                json={"set": {"sms": {"provider": copied}}},
                headers={"If-Match": group.headers["ETag"]},
            )
        for response in (refused, new_site, defaults):
            assert response.status_code == 409, response.text
            problem = response.json()
            assert problem["errors"][0]["field"] == "sms.provider.account_id"
            assert group_a not in response.text and site_a["site_id"] not in response.text
        # Nor as the secondary account a site fails over to.
        own_primary = {**copied, "account_id": f"{sid}c"}
        async with config.client(manager_b) as api:
            current = await api.get(f"/api/v1/sites/{site_b}")
            spare = await api.patch(
                f"/api/v1/sites/{site_b}/settings",
                json={"set": {"sms": {"provider": own_primary, "secondary_provider": copied}}},
                headers={"If-Match": current.headers["ETag"]},
            )
        assert spare.status_code == 409, spare.text
        assert spare.json()["errors"][0]["field"] == "sms.secondary_provider.account_id"
        assert await config.stream_count() == before, "nothing was written"
        # A group may use its own account on every site, and B any account of its own.
        second_a = await config.create_site(
            admin_a, group_a, name="Second", settings={"sms": {"provider": twilio}}
        )
        assert second_a["settings"]["sms"]["provider"]["account_id"] == sid
        async with config.client(manager_b) as api:
            current = await api.get(f"/api/v1/sites/{site_b}")
            own = await api.patch(
                f"/api/v1/sites/{site_b}/settings",
                json={"set": {"sms": {"provider": {**copied, "account_id": f"{sid}b"}}}},
                headers={"If-Match": current.headers["ETag"]},
            )
        assert own.status_code == 200, own.text
    finally:
        service.stop()


# --- helpers -----------------------------------------------------------------------------------


async def _send_as(sim: Sim, account: SimAccount, *, reference: str, to: str) -> str:
    async with sim.client() as http:
        response = await http.post(
            "/v1/messages",
            json={"reference": reference, "to": to, "from": SENDER, "body": "hello"},
            headers={"Authorization": f"Bearer {account.api_key}"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _answered(sim: Sim, event_id: str) -> bool:
    return any(a["ok"] for a in await sim.webhook_attempts(event_id))


async def _receipt_of(gw: Any, message_id: str) -> str | None:
    m = tables.DISPATCH.messages
    async with gw.ctx.db() as session:
        row = (
            await session.execute(
                sa.select(m.c.state, m.c.receipt).where(m.c.message_id == message_id)
            )
        ).one()
    assert row.state == "sent"
    return row.receipt  # type: ignore[no-any-return]


async def _delivered_ids(nc: Client) -> set[str]:
    return {
        e.data.message_id  # type: ignore[attr-defined]
        for e in await events(nc, DISPATCH)
        if e.type in ("stagger.dispatch.delivered", "stagger.dispatch.undelivered")
    }


async def _delivered(nc: Client, message_id: str) -> bool:
    return message_id in await _delivered_ids(nc)


def _cli_listing(database_url: str, var_dir: Path) -> list[dict[str, Any]]:
    """What an operator sees: `stagger replies unrouted --json` against the gateway's database."""
    result = CliRunner().invoke(
        cli,
        ["replies", "unrouted", "--json"],
        env={"STAGGER_DATABASE_URL": database_url, "STAGGER_VAR_DIR": str(var_dir)},
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.strip()]


async def _listed(config: ConfigHarness, admin: str, group_id: str, site_id: str) -> None:
    """Until the config read model (what the account check reads) has the site."""

    async def present() -> bool:
        async with config.client(admin) as api:
            rows = (await api.get(f"/api/v1/groups/{group_id}/sites")).json()
        return site_id in {r["site_id"] for r in rows}

    await wait_until(present, timeout=20, message=f"site {site_id} listed")
