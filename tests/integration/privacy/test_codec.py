"""Sealing personal fields under per-recipient keys in the real NATS key-value bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.aio.client import Client

from shared.events.schemas.messages import Attachment, MessageAccepted
from shared.privacy.cipher import ERASED, is_personal, key_id_of
from shared.privacy.codec import BODY, PersonalData, day_of
from shared.privacy.erasure import erase_recipient, reapply_erasures
from shared.secrets import SecretBox, generate_key


def _message(to: str = "+61412345678") -> MessageAccepted:
    return MessageAccepted(
        message_id="m-1",
        group_id="g1",
        site_id="s1",
        channel="sms",
        to=to,
        body="Your appointment is at 10:00",
        attachments=[Attachment(filename="scan.pdf", size=3, content_b64="YWJj")],
        submitted_at=datetime.now(UTC),
    )


async def test_a_sealed_message_opens_until_its_recipient_is_erased(nc: Client) -> None:
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    sealed = await personal.seal_message(_message())
    assert is_personal(sealed.to) and is_personal(sealed.body)
    assert "+61412345678" not in sealed.model_dump_json()
    assert "appointment" not in sealed.model_dump_json()
    assert sealed.recipient_tag == personal.tag("g1", "+61 412 345 678")
    opened = await personal.open_message(sealed)
    assert (opened.to, opened.body, opened.attachments[0].filename) == (
        "+61412345678",
        "Your appointment is at 10:00",
        "scan.pdf",
    )

    tag, erased = await personal.erase("g1", "+61412345678")
    assert tag == sealed.recipient_tag and erased == 2
    # Another process (no cache) and this one both find nothing left to open.
    fresh = PersonalData(nc, personal.keys._box)
    for reader in (personal, fresh):
        gone = await reader.open_message(sealed)
        assert (gone.to, gone.body) == (ERASED, ERASED)
    assert (await personal.erase("g1", "+61412345678"))[1] == 0  # idempotent


async def test_a_value_of_one_group_does_not_open_in_another(nc: Client) -> None:
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    sealed = await personal.seal("g1", "a@example.org", BODY, "hello")
    assert await personal.open("g1", sealed) == "hello"
    assert await personal.open("g2", sealed) == ERASED


async def test_retention_deletes_body_keys_of_old_days_only(nc: Client) -> None:
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    old = datetime.now(UTC) - timedelta(days=2)
    old_message = _message().model_copy(update={"submitted_at": old})
    sealed_old = await personal.seal_message(old_message)
    sealed_new = await personal.seal_message(_message().model_copy(update={"message_id": "m-2"}))
    cutoff = day_of(datetime.now(UTC) - timedelta(days=1))
    assert await personal.expire("g1", BODY, cutoff) == 1
    personal.keys.forget_cached("g1.")
    opened_old = await personal.open_message(sealed_old)
    assert opened_old.body == ERASED and opened_old.to == "+61412345678"
    assert (await personal.open_message(sealed_new)).body == "Your appointment is at 10:00"


async def test_keys_restored_from_a_backup_are_erased_again(nc: Client) -> None:
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    sealed = await personal.seal_message(_message())
    kv = await nc.jetstream().key_value("privacy_keys")
    backup = {}
    for name in await personal.keys.names("g1.>"):
        backup[name] = (await kv.get(name)).value
    done = await erase_recipient(nc, personal, "g1", "+61412345678", "test:admin")
    assert done.keys_erased == 2 and done.event_id is not None
    for name, value in backup.items():  # a restore of the bucket from before the erasure
        await kv.put(name, value)
    personal.keys.forget_cached("g1.")
    assert (await personal.open_message(sealed)).body == "Your appointment is at 10:00"
    assert await reapply_erasures(nc, personal) == 2
    personal.keys.forget_cached("g1.")
    assert (await personal.open_message(sealed)).body == ERASED
    assert await reapply_erasures(nc, personal) == 0


async def test_a_batch_is_sealed_and_opened_per_group_and_day(nc: Client) -> None:
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    clear = [
        _message("a@example.org"),
        _message("b@example.org").model_copy(update={"group_id": "g2"}),
        _message("a@example.org").model_copy(update={"submitted_at": yesterday}),
        _message("c@example.org"),
    ]
    already = await personal.seal_message(_message("d@example.org"))
    sealed = await personal.seal_messages([*clear, already])
    assert sealed[-1] is already, "a sealed message is left as it is"
    for before, after in zip(clear, sealed, strict=False):
        assert is_personal(after.to) and is_personal(after.body)
        assert after.recipient_tag == personal.tag(before.group_id, before.to)
        assert key_id_of(after.body).endswith(day_of(before.submitted_at))
    # Each alone opens to what the batch opens to, in another process too (nothing cached).
    fresh = PersonalData(nc, personal.keys._box)
    for reader in (personal, fresh):
        opened = await reader.open_messages(sealed)
        assert [m.to for m in opened] == [m.to for m in clear] + ["d@example.org"]
        assert all(m.body == "Your appointment is at 10:00" for m in opened)
        assert [(await reader.open_message(s)).to for s in sealed] == [m.to for m in opened]
    await personal.erase("g1", "a@example.org")
    gone = await PersonalData(nc, personal.keys._box).open_messages(sealed)
    assert [m.to for m in gone] == [
        ERASED,
        "b@example.org",
        ERASED,
        "c@example.org",
        "d@example.org",
    ]
