"""Every NATS subject Stagger uses, built in one place so producers and consumers agree.

Identifiers (group, site, account ids) are restricted to `[a-z0-9-]` so they are always a single
subject token; `check_token` enforces that at every boundary that builds a subject.
"""

from __future__ import annotations

import re
from typing import Literal

Channel = Literal["sms", "email"]
CHANNELS: tuple[Channel, ...] = ("sms", "email")

_TOKEN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class InvalidToken(ValueError):
    """An identifier that cannot be used as one NATS subject token."""


def check_token(value: str, what: str = "identifier") -> str:
    """Return `value` if it is a safe single subject token, else raise `InvalidToken`."""
    if not _TOKEN.match(value):
        raise InvalidToken(
            f"{what} {value!r} must be 1-63 characters of lowercase letters, digits and '-', "
            "starting with a letter or digit"
        )
    return value


# The event store: one subject per aggregate.
def settings_site(group: str, site: str) -> str:
    """Subject of a site's settings aggregate."""
    return f"settings.{group}.{site}"


GROUP_AGGREGATE = "_group"


def settings_group(group: str) -> str:
    """Subject of a group's aggregate (its defaults for every site)."""
    return f"settings.{group}.{GROUP_AGGREGATE}"


def access_token(token_id: str) -> str:
    """Subject of one API token's aggregate (its group is in the events)."""
    return f"access.token.{token_id}"


def access_user(user_id: str) -> str:
    """Subject of one staff user's aggregate (invitation, role changes, sign-ins)."""
    return f"access.user.{user_id}"


def outbox(channel: Channel, site: str) -> str:
    """Where accepted messages for one site and channel wait for their gateway."""
    return f"outbox.{channel}.{site}"


def tick_site(channel: Channel, site: str) -> str:
    """Ticks that release one site's messages."""
    return f"ticks.{channel}.site.{site}"


def tick_account(channel: Channel, account: str) -> str:
    """Ticks that release messages of every site sharing one provider account."""
    return f"ticks.{channel}.account.{account}"


def control(command: str, site: str) -> str:
    """Operator commands for the scheduler (send-now)."""
    return f"control.{command}.{site}"


def gateway_control(channel: Channel, command: str, site: str) -> str:
    """Operator commands for one gateway (reset-failed, cancel, release attachment)."""
    return f"control.{channel}.{command}.{site}"


def dispatch(channel: Channel, site: str) -> str:
    """Events in the life of messages: queued, sent, delivered, failed, suppressed…"""
    return f"dispatch.{channel}.{site}"


def credits(account: str) -> str:
    """Credit balance and top-up events of one provider account."""
    return f"credits.{account}"


def provider_health(account: str) -> str:
    """Provider reachability/test events of one account."""
    return f"provider.{account}"


def replies(site: str) -> str:
    """Inbound SMS replies for a site."""
    return f"replies.{site}"


def inbound_email(site: str) -> str:
    """Inbound email (and attachment quarantine/release) events for a site."""
    return f"inbound.email.{site}"


def optouts(group: str, channel: Channel) -> str:
    """A group's suppression list for a channel (event-sourced)."""
    return f"optouts.{group}.{channel}"


def alerts(group: str) -> str:
    """Subject of a group's alerts (raised, cleared)."""
    return f"alerts.{check_token(group, 'group id')}"


def erasures(group: str) -> str:
    """A group's erasures of recipients' personal data (on the OPTOUTS stream)."""
    return f"optouts.{group}.erasures"


def retention(group: str) -> str:
    """A group's retention of personal data (on the OPTOUTS stream)."""
    return f"optouts.{group}.retention"


def dead_letter(origin: str, consumer: str) -> str:
    """Where a consumer puts a message it cannot process."""
    return f"deadletter.{origin.lower()}.{consumer}"


# Core NATS (not persisted).
HEALTH_PREFIX = "stagger.health"


def health(service: str) -> str:
    """Heartbeat subject of a service."""
    return f"{HEALTH_PREFIX}.{service}"


def rpc(service: str, method: str) -> str:
    """Request/reply endpoint of a service (e.g. provider test on the SMS gateway)."""
    return f"stagger.rpc.{service}.{method}"


def access_sso(group_id: str) -> str:
    """Subject of a group's single sign-on settings aggregate."""
    return f"access.sso.{group_id}"


def access_sso_refusals(group_id: str) -> str:
    """Subject of the sign-ins a group's provider vouched for but Stagger refused."""
    return f"access.sso_refused.{group_id}"


def streams_rewritten() -> str:
    """Where `stagger privacy rewrite-streams` records what it did (on the OPTOUTS stream,
    which keeps everything, with the other privacy records; in the `_system` audit chain)."""
    return "optouts._system.streams_rewritten"
