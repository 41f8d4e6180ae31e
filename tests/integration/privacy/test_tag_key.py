"""The tag key is the deployment's own, kept sealed in the key bucket: rotating the service key
(new key first, `stagger secrets reseal`, old key dropped) changes no tag, so suppression lists,
the ledgers' recipient column and reply routing keep matching."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.client import Client

from shared.privacy.codec import ADDRESS, PersonalData
from shared.privacy.keyring import RecipientKeys
from shared.privacy.tag_key import LEGACY_PURPOSE
from shared.privacy.tags import recipient_tag
from shared.secrets import SecretBox, SecretKeyError, generate_key
from shared.suppression import SuppressionList, record_opt_out
from tests.support.waiting import wait_until

NUMBER = "+61412345678"
OLD, NEW = generate_key().encode(), generate_key().encode()


async def _rotate(nc: Client) -> int:
    """What an operator does: the new key first, the old one kept, every key re-sealed."""
    keys = RecipientKeys(nc, SecretBox([NEW, OLD]))
    count = await keys.reseal()
    assert await keys.stale() == []
    return count


async def test_tags_and_sealed_fields_survive_a_rotation_once_the_old_key_is_dropped(
    nc: Client,
) -> None:
    before = PersonalData(nc, SecretBox([OLD]))
    sealed = await before.seal("g1", NUMBER, ADDRESS, NUMBER)
    tag = before.tag("g1", NUMBER)

    assert await _rotate(nc) == 2  # the recipient's address key and the tag key
    after = await PersonalData(nc, SecretBox([NEW])).ready()  # the old key is gone
    assert after.tag("g1", NUMBER) == tag
    assert after.tag("g1", NUMBER) != recipient_tag(
        SecretBox([NEW]).derive_key(LEGACY_PURPOSE), "g1", NUMBER
    )
    assert await after.open("g1", sealed) == NUMBER
    assert await _rotate(nc) == 0  # nothing left under the old key


async def test_without_the_reseal_the_new_key_alone_refuses_to_start(nc: Client) -> None:
    await PersonalData(nc, SecretBox([OLD])).ready()
    with pytest.raises(SecretKeyError, match="tag key"):
        await PersonalData(nc, SecretBox([NEW])).ready()
    with pytest.raises(SecretKeyError, match="nothing was re-sealed"):
        await RecipientKeys(nc, SecretBox([NEW])).reseal()


async def test_an_opt_out_recorded_before_the_rotation_still_suppresses_after_it(
    nc: Client,
) -> None:
    before = PersonalData(nc, SecretBox([OLD]))
    await record_opt_out(
        nc,
        group_id="g1",
        channel="sms",
        recipient=NUMBER,
        how="keyword",
        actor="test",
        personal=before,
    )
    # One recorded in clear (an unsubscribe link), folded into the tag by the gateway.
    await record_opt_out(
        nc, group_id="g1", channel="sms", recipient="+61400000001", how="staff", actor="test"
    )
    await _rotate(nc)
    after = await PersonalData(nc, SecretBox([NEW])).ready()
    lists = SuppressionList(nc, after.tag)
    task = asyncio.create_task(lists.follow())
    try:
        await asyncio.wait_for(lists.ready.wait(), 30)

        async def both() -> bool:
            return len(lists.recipients("g1", "sms")) == 2

        await wait_until(both, timeout=30, message="both opt-outs folded")
        assert lists.is_suppressed("g1", "sms", after.tag("g1", NUMBER))
        assert lists.is_suppressed("g1", "sms", after.tag("g1", "+61 400 000 001"))
        assert not lists.is_suppressed("g1", "sms", after.tag("g1", "+61400000002"))
    finally:
        task.cancel()


async def test_an_existing_deployment_keeps_the_tags_it_already_wrote(nc: Client) -> None:
    box = SecretBox([OLD])
    # Keys sealed by a version that derived its tags from the service key.
    legacy = recipient_tag(box.derive_key(LEGACY_PURPOSE), "g1", NUMBER)
    await RecipientKeys(nc, box).get_or_create("g1", f"{legacy}.id.0")
    personal = await PersonalData(nc, box).ready()
    assert personal.tag("g1", NUMBER) == legacy


async def test_a_new_deployment_gets_a_random_key_all_services_agree_on(
    nc: Client, nats_url: str
) -> None:
    box = SecretBox([OLD])
    clients = [await nats.connect(nats_url) for _ in range(6)]
    try:
        services = [PersonalData(c, box) for c in clients]
        await asyncio.gather(*(s.ready() for s in services))
        tags = {s.tag("g1", NUMBER) for s in services}
    finally:
        for c in clients:
            await c.close()
    assert len(tags) == 1
    assert tags != {recipient_tag(box.derive_key(LEGACY_PURPOSE), "g1", NUMBER)}
