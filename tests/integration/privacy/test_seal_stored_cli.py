"""An SMS ledger written before sealing, upgraded: migration sms_0013 takes the number out of
the errors, `stagger privacy seal-stored` seals the rest, and no byte of the SQLite files holds
the number or the text any more."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from nats.aio.client import Client

from shared.db.engine import create_engine, session_factory
from shared.db.migrate import SHARED_CHAIN, MigrationChain, migrate, service_chain
from shared.events.schemas.messages import MessageAccepted
from shared.privacy.cipher import is_personal
from shared.privacy.codec import PersonalData
from shared.secrets import SecretBox, generate_key
from tests.integration.dispatch.harness import MIGRATIONS, SMS_TABLES
from tests.support.processes import run_cli

NUMBER = "+61412345678"
TEXT = "Your crown fitting is on Tuesday"
CHAINS = [SHARED_CHAIN, service_chain("sms_gateway", MIGRATIONS)]


def _upgrade_to(connection: sa.Connection, chains: list[MigrationChain], sms: str) -> None:
    for chain in chains:
        config = Config()
        config.set_main_option("script_location", str(chain.script_location))
        config.set_main_option("version_table", chain.version_table)
        config.attributes["connection"] = connection
        command.upgrade(config, sms if chain.name == "sms_gateway" else "head")
        connection.commit()


def _row(message_id: str, error: str | None) -> dict[str, object]:
    now = datetime.now(UTC)
    message = MessageAccepted(
        message_id=message_id,
        group_id="g1",
        site_id="s1",
        channel="sms",
        to=NUMBER,
        body=TEXT,
        submitted_at=now,
    )
    return {
        "message_id": message_id,
        "group_id": "g1",
        "site_id": "s1",
        "recipient": NUMBER,
        "category": "transactional",
        "payload": message.model_dump(mode="json"),
        "state": "failed" if error else "sent",
        "accepted_at": now,
        "queued_at": now,
        "last_error": error,
    }


def _bytes(var_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(var_dir.glob("sms_gateway.db*")))


async def test_an_upgraded_ledger_holds_no_number_once_sealed(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    key = generate_key()
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'sms_gateway.db'}")
    try:
        # The ledger as the gateway wrote it before sealing existed.
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade_to, CHAINS, "sms_0012")
        async with session_factory(engine)() as session, session.begin():
            await session.execute(
                sa.insert(SMS_TABLES.messages),
                [_row("m-1", None), _row("m-2", f"The 'To' number {NUMBER} is not valid")],
            )
        async with engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        assert NUMBER.encode() in _bytes(tmp_path) and TEXT.encode() in _bytes(tmp_path)

        await migrate(engine, CHAINS)  # sms_0013
        m = SMS_TABLES.messages
        async with session_factory(engine)() as session:
            errors = (await session.execute(sa.select(m.c.last_error))).scalars().all()
        assert sorted(map(str, errors)) == ["None", "The 'To' number <recipient> is not valid"]
    finally:
        await engine.dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_")}
    env.update(STAGGER_NATS_URL=nats_url, STAGGER_SECRET_KEY=key, STAGGER_VAR_DIR=str(tmp_path))
    code, out, err = await run_cli(env, "privacy", "seal-stored", "--service", "sms_gateway")
    assert code == 0, err
    assert json.loads(out) == {"sms_gateway": {"sealed": 2, "left_in_clear": 0}}
    code, out, err = await run_cli(env, "privacy", "seal-stored", "--service", "sms_gateway")
    assert json.loads(out) == {"sms_gateway": {"sealed": 0, "left_in_clear": 0}}

    stored = _bytes(tmp_path)
    for clear in (NUMBER, NUMBER[1:], TEXT):
        assert clear.encode() not in stored, f"{clear!r} is still in the SQLite files"
    # Sealed, not lost: the service key opens them, filed under the recipient's tag.
    personal = await PersonalData(nc, SecretBox([key.encode()])).ready()
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'sms_gateway.db'}")
    try:
        async with session_factory(engine)() as session:
            rows = (await session.execute(sa.select(m.c.recipient, m.c.payload))).all()
    finally:
        await engine.dispose()
    assert {r.recipient for r in rows} == {personal.tag("g1", NUMBER)}
    for row in rows:
        assert is_personal(row.payload["to"])
        assert await personal.open("g1", row.payload["to"]) == NUMBER
        assert await personal.open("g1", row.payload["body"]) == TEXT
