"""Reply attribution: one group per provider account, never a guess across groups."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.reply_attribution import (
    InboundKey,
    Owners,
    Routed,
    SentMessage,
    SiteLine,
    Unrouted,
    attribute,
    owners,
)

NUMBER = "+61491570999"
PATIENT = "+61400000001"


def line(
    site: str, group: str, account: str, *, sender: str | None = NUMBER, provider: str = "simulator"
) -> SiteLine:
    return SiteLine(group, site, provider, account, f"sms-{provider}-{account}", sender)


def key(account: str | None, *, to: str = NUMBER, provider: str = "simulator") -> InboundKey:
    return InboundKey(provider, account, to, PATIENT)


def sent(message: str, site: str, account: str, to: str = PATIENT) -> SentMessage:
    return SentMessage(message, site, f"sms-simulator-{account}", to)


# The bug report: two groups, their own accounts, one sender number, one patient.
A = line("s-a", "g-a", "acct-a")
B = line("s-b", "g-b", "acct-b")


def test_the_account_decides_the_group_not_the_last_sender() -> None:
    b_wrote_last = sent("m-b", "s-b", "acct-b")
    assert attribute([A, B], key("acct-a"), None, b_wrote_last) == Routed(
        "g-a", "s-a", None, "number"
    )
    a_wrote = sent("m-a", "s-a", "acct-a")
    assert attribute([A, B], key("acct-a"), None, a_wrote) == Routed(
        "g-a", "s-a", "m-a", "last_sent"
    )


def test_in_reply_to_counts_only_for_the_same_account_and_recipient() -> None:
    other_account = sent("m-b", "s-b", "acct-b")
    assert attribute([A, B], key("acct-a"), other_account, None).message_id is None  # type: ignore[union-attr]
    other_patient = sent("m-a", "s-a", "acct-a", to="+61400000002")
    assert attribute([A, B], key("acct-a"), other_patient, None).message_id is None  # type: ignore[union-attr]
    linked = sent("m-a", "s-a", "acct-a")
    assert attribute([A, B], key("acct-a"), linked, None) == Routed(
        "g-a", "s-a", "m-a", "in_reply_to"
    )


def test_inside_the_group_the_number_written_to_picks_the_sites() -> None:
    a1 = line("s-a1", "g-a", "acct-a", sender=NUMBER)
    a2 = line("s-a2", "g-a", "acct-a", sender="+61491570888")
    # The patient wrote to a1's number; a2 wrote last, from another number: a1 it is.
    assert attribute([a1, a2], key("acct-a"), None, None) == Routed("g-a", "s-a1", None, "number")
    from_a1 = sent("m-1", "s-a1", "acct-a")
    assert attribute([a1, a2], key("acct-a"), None, from_a1).site_id == "s-a1"  # type: ignore[union-attr]
    # A number no site sends from: only a message actually sent to the patient decides.
    elsewhere = key("acct-a", to="+61491570777")
    from_a2 = sent("m-2", "s-a2", "acct-a")
    assert attribute([a1, a2], elsewhere, None, from_a2) == Routed(
        "g-a", "s-a2", "m-2", "last_sent"
    )
    assert attribute([a1, a2], elsewhere, None, None) == Unrouted(
        "unknown_number",
        "no site of this account sends from the number written to, "
        "and none of its messages went to the sender",
    )


def test_what_cannot_be_decided_is_unrouted_with_its_reason() -> None:
    assert attribute([A, B], key(None)).code == "no_account"  # type: ignore[union-attr]
    assert attribute([A, B], key("acct-c")).code == "unknown_account"  # type: ignore[union-attr]
    assert attribute([A, B], key("acct-a", provider="twilio")).code == "unknown_account"  # type: ignore[union-attr]
    shared = line("s-b2", "g-b", "acct-a")
    found = attribute([A, B, shared], key("acct-a"), sent("m-a", "s-a", "acct-a"))
    assert found == Unrouted(
        "shared_account", "sites of 2 groups send through this simulator account"
    )
    assert "g-a" not in found.reason and "g-b" not in found.reason  # type: ignore[union-attr]


# --- properties ------------------------------------------------------------------------------

GROUPS = st.sampled_from(["g-1", "g-2", "g-3"])
ACCOUNTS = st.sampled_from(["a-1", "a-2", "a-3"])
NUMBERS = st.sampled_from([NUMBER, "+61491570888"])
PATIENTS = st.sampled_from([PATIENT, "+61400000002"])
SITES = st.lists(
    st.builds(
        lambda i, g, a, n, p: line(f"s-{i}", g, a, sender=n, provider=p),
        st.integers(0, 20),
        GROUPS,
        ACCOUNTS,
        NUMBERS,
        st.sampled_from(["simulator", "twilio"]),
    ),
    max_size=8,
    unique_by=lambda s: s.site_id,
)
MESSAGES = st.none() | st.builds(
    lambda m, i, a, p: SentMessage(m, f"s-{i}", f"sms-simulator-{a}", p),
    st.sampled_from(["m-1", "m-2"]),
    st.integers(0, 20),
    ACCOUNTS,
    PATIENTS,
)
INBOUNDS = st.builds(
    lambda a, n, p: InboundKey("simulator", a, n, p), st.none() | ACCOUNTS, NUMBERS, PATIENTS
)


@given(SITES, INBOUNDS, MESSAGES, MESSAGES)
def test_never_routes_to_a_group_that_does_not_own_the_account(
    sites: list[SiteLine],
    inbound: InboundKey,
    linked: SentMessage | None,
    last: SentMessage | None,
) -> None:
    found = attribute(sites, inbound, linked, last)
    if isinstance(found, Unrouted):
        return
    site = next(s for s in sites if s.site_id == found.site_id)
    assert (site.group_id, site.provider, site.account_id) == (
        found.group_id,
        inbound.provider,
        inbound.account_id,
    )
    users = {
        s.group_id
        for s in sites
        if s.provider == inbound.provider and s.account_id == inbound.account_id
    }
    assert users == {found.group_id}, "an account used by several groups is never routed"


@given(SITES, INBOUNDS, MESSAGES, MESSAGES)
def test_a_named_message_went_to_the_sender_through_the_same_account(
    sites: list[SiteLine],
    inbound: InboundKey,
    linked: SentMessage | None,
    last: SentMessage | None,
) -> None:
    found = attribute(sites, inbound, linked, last)
    if not isinstance(found, Routed) or found.message_id is None:
        return
    message = linked if found.by == "in_reply_to" else last
    assert message is not None and message.message_id == found.message_id
    assert message.recipient == inbound.from_number
    assert message.site_id == found.site_id
    site = next(s for s in sites if s.site_id == found.site_id)
    assert message.account == site.account


@given(SITES, INBOUNDS, MESSAGES, MESSAGES, st.randoms(use_true_random=False))
def test_the_order_sites_are_listed_in_does_not_matter(
    sites: list[SiteLine],
    inbound: InboundKey,
    linked: SentMessage | None,
    last: SentMessage | None,
    rnd: object,
) -> None:
    shuffled = list(sites)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert attribute(sites, inbound, linked, last) == attribute(shuffled, inbound, linked, last)


def test_owners_scope_the_lookup_to_the_group_and_its_account_ids() -> None:
    a_other_url = SiteLine("g-a", "s-a2", "simulator", "acct-a", "sms-other-url", None)
    found = owners([A, B, a_other_url], key("acct-a"))
    assert isinstance(found, Owners)
    assert found.group_id == "g-a"
    assert found.accounts == {"sms-simulator-acct-a", "sms-other-url"}
    assert [s.site_id for s in found.pool] == ["s-a"]
