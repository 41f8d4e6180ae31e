"""A provider without a reference field (Twilio, Kudosity, Esendex) is searched by recipient,
body and time; the ids the ledger already gives other messages to the number are passed as
taken. With sealed rows the ledger files the number by its tag: the lookup must ask by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nats.aio.client import Client

from services.config.handlers.submission import SubmissionIn, publish, validate
from services.sms_gateway.adapters.ledger import Ledger
from services.sms_gateway.adapters.providers.catalogue import CONTENT_SEARCHED
from services.sms_gateway.handlers.channel import SmsAdapter
from shared.dispatch import schema
from shared.dispatch.tuning import EngineTuning
from shared.events.schemas.dispatch import Release
from shared.privacy.codec import PersonalData
from shared.secrets import SecretBox, generate_key
from shared.suppression import SuppressionList
from tests.integration.dispatch.harness import (
    SMS_TABLES,
    FakeAdapter,
    FakeProvider,
    config_handlers,
    engine_running,
    make_site,
)
from tests.support.fakes.sms import FakeOptOuts, FakeProviders, FakeQueue, FakeSmsProvider
from tests.support.waiting import wait_until
from tests.unit.sms_gateway.handler_kit import site

NUMBER = "+447700900123"


async def _submit_twice(nc: Client) -> list[str]:
    """Two messages, same number, same text (a content search cannot tell them apart)."""
    handlers = config_handlers(nc)
    body = SubmissionIn.model_validate(
        {
            "channel": "sms",
            "messages": [
                {"to": NUMBER, "body": "See you at 9", "idempotency_key": f"k-{i}"}
                for i in range(2)
            ],
        }
    )
    accepted, outgoing = validate(await handlers.site("s1"), body, "test")
    await publish(nc, accepted, outgoing)
    return [a.message_id for a in accepted]


async def _rows(service: Any) -> list[Any]:
    m = SMS_TABLES.messages
    async with service.engine.queue.db() as session:
        return list(await session.execute(sa.select(m.c.message_id, m.c.recipient)))


@pytest.mark.parametrize("kind", sorted(CONTENT_SEARCHED))
async def test_the_second_lookup_excludes_the_first_messages_provider_id(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, kind: str
) -> None:
    await make_site(nc, group="g1", site="s1")
    async with engine_running(
        nats_url, database_url, tmp_path, FakeAdapter(FakeProvider()), EngineTuning()
    ) as service:
        queue = service.engine.queue
        personal = await PersonalData(nc, SecretBox([generate_key().encode()])).ready()
        queue.personal = personal  # intake seals: the ledger files the number by its tag
        first, second = await _submit_twice(nc)

        async def stored() -> bool:
            return len(await _rows(service)) == 2

        await wait_until(stored, timeout=30, message="both messages in the ledger")
        tag = personal.tag("g1", NUMBER)
        assert {r.recipient for r in await _rows(service)} == {tag}
        m = SMS_TABLES.messages
        async with queue.db() as session, session.begin():
            await session.execute(
                sa.update(m)
                .where(m.c.message_id == first)
                .values(state=schema.SENT, provider_message_id="SM-first")
            )
        now = datetime.now(UTC)
        (claimed,) = await queue.claim(
            ["s1"],
            5,
            now=now,
            lease=timedelta(seconds=30),
            release=Release(tick_id="t", scheduled_at=now, reason="test"),
        )
        assert (claimed.message_id, claimed.recipient, claimed.recipient_key) == (
            second,
            NUMBER,
            tag,
        )
        provider = FakeSmsProvider()
        provider.kind = kind  # type: ignore[misc]
        sms = SmsAdapter(
            default_sender="Stagger",
            suppression=lambda: SuppressionList(None),  # type: ignore[arg-type]
            providers=lambda: FakeProviders(provider),  # type: ignore[arg-type,return-value]
            credits=None,  # type: ignore[arg-type]
            ledger=Ledger(queue.db, m),
            queue=lambda: FakeQueue(),  # type: ignore[arg-type,return-value]
            optouts=FakeOptOuts(),  # type: ignore[arg-type]
        )
        found = await sms.reconcile(claimed, site("s1", "g1"))
        assert found.sent is False
        assert [o.to for o in provider.looked_up] == [NUMBER]  # the provider gets the number
        assert provider.taken == [["SM-first"]]  # and the first message's id is not a match
