"""Schemas of every event type. Importing this package registers them all.

One module per stream family; `docs/events.md` is generated from the registry
(`stagger docs events`), and a test keeps it current.
"""

from shared.events.schemas import (  # noqa: F401
    access,
    alerts,
    control,
    deadletter,
    dispatch,
    inbound_email,
    messages,
    optouts,
    privacy,
    providers,
    replies,
    settings,
    sso,
    staff,
    ticks,
)
