"""A provider's receipt text that echoes the destination (several SMS providers put `to` or
`msisdn` in a receipt's status or error) is recorded without it: the gateway's ledger, the
DISPATCH event and NATS's files hold `<recipient>` instead (docs/privacy.md). Against the
simulator, NATS and the gateway's database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from services.sms_gateway.adapters import tables
from shared.bus.topology import DISPATCH
from shared.runtime.nats_server import NatsServer
from tests.integration.sms_gateway.harness import (
    AccountTicks,
    Sim,
    events,
    gateway_running,
    make_site,
    submit,
    wait_terminal,
)
from tests.support.waiting import wait_until

PATIENT = "+61400000917"


def dispatch_files_holding(store: Path, needles: list[bytes]) -> list[str]:
    """Files of the DISPATCH stream in NATS's data directory holding any needle."""
    found = []
    for root in (d for d in store.rglob("streams/*") if d.name == DISPATCH):
        for path in (p for p in root.rglob("*") if p.is_file()):
            raw = path.read_bytes()
            found += [f"{path.name}: {n!r}" for n in needles if n in raw]
    return found


async def test_a_receipt_echoing_the_number_is_recorded_without_it(
    nc: Client,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
    sim: Sim,
    nats_server: NatsServer,
) -> None:
    account = await sim.account(credits=10)  # no webhook: the receipt below is the only one
    site = await make_site(nc, sim, account, rate=50)
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        (sent,) = await submit(nc, site["site"], 1, to=PATIENT)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=50):
            await wait_terminal(nc, [sent])
        matched = await gw.engine.queue.receipt(
            accounts=[site["account"]],
            message_id=sent,
            delivered=False,
            occurred_at=datetime.now(UTC),
            raw_status="FAILED 61400000917",
            reason="Failed: +61 400 000 917 is not reachable",
        )
        assert matched == sent

        async def recorded() -> list:
            return [e for e in await events(nc, DISPATCH) if e.type.endswith(".undelivered")]

        await wait_until(recorded, timeout=20, message="the receipt's event")
        (event,) = await recorded()
        assert event.data.raw_status == "FAILED <recipient>"
        assert event.data.reason == "Failed: <recipient> is not reachable"
        m = tables.DISPATCH.messages
        async with gw.engine.queue.db() as session:
            row = (await session.execute(sa.select(m).where(m.c.message_id == sent))).one()
        assert "400000917" not in str(row._mapping)
    digits = [b"61400000917", b"400 000 917"]
    store = nats_server.store_dir
    await wait_until(lambda: _on_disk(store, sent.encode()), timeout=30, message="DISPATCH on disk")
    assert dispatch_files_holding(store, digits) == []


async def _on_disk(store: Path, marker: bytes) -> bool:
    return bool(dispatch_files_holding(store, [marker]))
