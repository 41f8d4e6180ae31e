"""De-duplication ids of accepted messages: the site they name, and the keyed tag."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.bus import outbox_ids
from shared.secrets import SecretBox, generate_key

TOKENS = st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True)


@given(site=TOKENS, mid=st.uuids().map(str))
def test_a_keyed_id_names_its_site_and_depends_on_the_key(site: str, mid: str) -> None:
    one = outbox_ids.keyed_msg_id(site, mid, b"key-one")
    assert outbox_ids.site_of_msg_id(one) == site
    assert one.startswith(f"{site}:{mid}:")
    assert one == outbox_ids.keyed_msg_id(site, mid, b"key-one"), "a retry gets the same id"
    assert one != outbox_ids.keyed_msg_id(site, mid, b"key-two")
    assert one != outbox_ids.msg_id(site, mid)


def test_the_tag_key_follows_the_primary_secret_key() -> None:
    first, second = generate_key().encode(), generate_key().encode()
    purpose = "outbox-msg-id"
    assert SecretBox([first]).derive_key(purpose) == SecretBox([first, second]).derive_key(purpose)
    assert SecretBox([second, first]).derive_key(purpose) != SecretBox([first]).derive_key(purpose)
    assert SecretBox([first]).derive_key("other") != SecretBox([first]).derive_key(purpose)
