"""Which group and site an inbound SMS belongs to (DESIGN invariant 6: tenants never meet).

A patient's SMS arrives naming the provider kind, the provider account it came through and the
number the patient wrote to. The group is decided by the account alone: exactly one group may
send through it (the config service refuses a second). Inside that group:

1. the message the provider says it answers (`in_reply_to`), if that message went through the
   same account to the same number that is now writing back;
2. else the site that last sent to that number through the account, among the sites whose
   sender is the number written to (all the account's sites when none is);
3. else, when some site sends from the number written to, the first of them by id (the group
   is certain; the site only decides the keyword list and where the reply is shown).

Anything else is not guessed: the reply is `Unrouted`, with a reason an operator can act on.
Pure: the caller looks the candidate messages up (scoped with `Owners`) and acts on the answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

UnroutedCode = Literal["no_account", "unknown_account", "shared_account", "unknown_number"]
RoutedBy = Literal["in_reply_to", "last_sent", "number"]


@dataclass(frozen=True)
class SiteLine:
    """A site as attribution sees it: its group and the provider account and number it
    sends through (`account` is Stagger's id of the account, as sent messages record it)."""

    group_id: str
    site_id: str
    provider: str
    account_id: str | None
    account: str | None
    sender: str | None


@dataclass(frozen=True)
class InboundKey:
    """What the webhook says about a patient's SMS."""

    provider: str
    account_id: str | None
    to: str
    from_number: str


@dataclass(frozen=True)
class SentMessage:
    """A message we sent, as the ledger has it."""

    message_id: str
    site_id: str
    account: str | None
    recipient: str


@dataclass(frozen=True)
class Owners:
    """The one group whose sites send through the inbound's account."""

    group_id: str
    sites: tuple[SiteLine, ...]
    numbered: tuple[SiteLine, ...]
    """The account's sites whose sender is the number the patient wrote to."""

    @property
    def accounts(self) -> frozenset[str]:
        """Stagger's ids of the account (one per base URL the sites use)."""
        return frozenset(s.account for s in self.sites if s.account)

    @property
    def pool(self) -> tuple[SiteLine, ...]:
        """Sites whose last message to the number decides: those sending from the number
        written to, else every site of the account."""
        return self.numbered or self.sites


@dataclass(frozen=True)
class Routed:
    """The reply belongs to this site; `message_id` is the message it answers, if known."""

    group_id: str
    site_id: str
    message_id: str | None
    by: RoutedBy


@dataclass(frozen=True)
class Unrouted:
    """Nobody can be named without guessing; `reason` says why (for operators)."""

    code: UnroutedCode
    reason: str


def owners(sites: Iterable[SiteLine], inbound: InboundKey) -> Owners | Unrouted:
    """The group (and its sites) that sends through the inbound's provider account."""
    if not inbound.account_id:
        return Unrouted("no_account", "the webhook names no provider account")
    mine = sorted(
        (s for s in sites if s.provider == inbound.provider and s.account_id == inbound.account_id),
        key=lambda s: s.site_id,
    )
    if not mine:
        return Unrouted("unknown_account", f"no site sends through this {inbound.provider} account")
    groups = {s.group_id for s in mine}
    if len(groups) > 1:
        return Unrouted(
            "shared_account",
            f"sites of {len(groups)} groups send through this {inbound.provider} account",
        )
    numbered = tuple(s for s in mine if s.sender == inbound.to)
    return Owners(mine[0].group_id, tuple(mine), numbered)


def answers(found: Owners, inbound: InboundKey, message: SentMessage | None) -> bool:
    """True when `message` can be the one this reply answers: sent by one of the group's
    sites through the same account to the number now writing back."""
    return (
        message is not None
        and message.recipient == inbound.from_number
        and message.account is not None
        and message.account in found.accounts
        and any(s.site_id == message.site_id for s in found.sites)
    )


def route(
    found: Owners,
    inbound: InboundKey,
    linked: SentMessage | None,
    last_sent: SentMessage | None,
) -> Routed | Unrouted:
    """The site inside the owning group: the linked message, else the last one sent to the
    number by the pool, else the first site sending from the number written to."""
    if answers(found, inbound, linked):
        assert linked is not None
        return Routed(found.group_id, linked.site_id, linked.message_id, "in_reply_to")
    if answers(found, inbound, last_sent):
        assert last_sent is not None
        if any(s.site_id == last_sent.site_id for s in found.pool):
            return Routed(found.group_id, last_sent.site_id, last_sent.message_id, "last_sent")
    if found.numbered:
        return Routed(found.group_id, found.numbered[0].site_id, None, "number")
    return Unrouted(
        "unknown_number",
        "no site of this account sends from the number written to, "
        "and none of its messages went to the sender",
    )


def attribute(
    sites: Iterable[SiteLine],
    inbound: InboundKey,
    linked: SentMessage | None = None,
    last_sent: SentMessage | None = None,
) -> Routed | Unrouted:
    """`owners` then `route`, in one call (for callers that looked everything up)."""
    found = owners(sites, inbound)
    if isinstance(found, Unrouted):
        return found
    return route(found, inbound, linked, last_sent)
