"""The replies read model on real SQLite: a reply is unread until handled or answered, a replay
adds nothing, filters by keyword and status, unread counts per site."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from services.config.adapters import replies as model
from services.config.handlers.replies import search
from shared.events.envelope import EventData, make_event
from shared.events.schemas.replies import ReplyAnswered, ReplyHandled, ReplyReceived

WHERE = {"group_id": "g-1", "site_id": "s-1"}


def reply(number: str, body: str, kind: str = "unmatched") -> ReplyReceived:
    return ReplyReceived(
        **WHERE,
        provider="simulator",
        provider_inbound_id=number,
        from_number=number,
        to="+447700900999",
        body=body,
        received_at=datetime.now(UTC),
        kind=kind,  # type: ignore[arg-type]
        keyword="STOP" if kind == "optout" else None,
    )


def event(data: EventData, eid: str | None = None, actor: str = "user:u1") -> object:
    return make_event(data, source="test", actor=actor, event_id=eid)


async def test_unread_until_handled_or_answered_and_replays_add_nothing() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(model.replies.metadata.create_all, tables=[model.replies])
    db = async_sessionmaker(engine, expire_on_commit=False)
    projection = model.ReplyProjection()
    late, parking, stop = (
        event(reply("+447700900001", "Running late"), "r-1"),
        event(reply("+447700900002", "Is parking free?"), "r-2"),
        event(reply("+447700900003", "STOP", "optout"), "r-3"),
    )
    async with db() as session, session.begin():
        await projection.apply(session, [late, parking, stop, late])  # type: ignore[list-item]
    async with db() as session:
        assert await model.unread_counts(session, ["s-1", "s-2"]) == {"s-1": 2}
        automatic = await model.list_replies(session, ["s-1"], status="automatic")
        assert [r["reply_id"] for r in automatic] == ["r-3"]
        assert len(await model.list_replies(session, ["s-1"])) == 3
        assert await model.list_replies(session, ["s-2"]) == []
    # A keyword search opens the (sealed) texts first, then matches them.
    found = await search(db, _Clear(), "g-1", ["s-1"], keyword="PARK")  # type: ignore[arg-type]
    assert [r["reply_id"] for r in found] == ["r-2"]

    handled = event(ReplyHandled(**WHERE, reply_id="r-1"))
    answered = event(
        ReplyAnswered(**WHERE, reply_id="r-2", message_id="m-9", to="+447700900002", body="Yes")
    )
    wrong_site = event(ReplyHandled(group_id="g-1", site_id="s-2", reply_id="r-2"))
    async with db() as session, session.begin():
        await projection.apply(session, [handled, answered, wrong_site])  # type: ignore[list-item]
    async with db() as session:
        assert await model.unread_counts(session, ["s-1"]) == {}
        one = await model.get_reply(session, "s-1", "r-2")
        assert one is not None
        assert (one["answered"], one["last_answer_message_id"], one["unread"]) == (1, "m-9", False)
        assert one["handled_by"] == "user:u1"
        assert await model.get_reply(session, "s-2", "r-2") is None
        handled_ids = await model.list_replies(session, ["s-1"], status="handled")
        assert sorted(r["reply_id"] for r in handled_ids) == ["r-1", "r-2"]
        count = await session.execute(sa.select(sa.func.count()).select_from(model.replies))
        assert count.scalar_one() == 3
    await engine.dispose()


class _Clear:
    """Personal data already in clear (what opening a sealed text gives)."""

    async def open(self, group_id: str, value: str | None) -> str | None:
        return value
