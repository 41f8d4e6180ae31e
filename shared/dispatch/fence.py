"""The last check before a send becomes irrevocable: is the message's lease still this
replica's?

A lease is measured in wall time. A replica starved of CPU (or of the database) can fail to
renew it while its sends wait for a slot or a connection; another replica then takes the
message over and reconciles it, finds nothing at the provider, and queues it again. Had the
starved replica gone on to send, the message would go out twice. So the engine confirms the
lease in the ledger (and extends it) just before the provider call, and an adapter that waits
inside `send` (for a pooled connection, say) calls `confirm_lease()` again right before the
step that cannot be taken back. A lease that is no longer ours raises `LeaseLost`: the replica
that took it over decides what happens to the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar


class LeaseLost(Exception):
    """The message's lease passed to another replica: this one must not send it."""


_fence: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar("lease_fence", default=None)


async def confirm_lease() -> None:
    """Raise `LeaseLost` if the message being sent by this task is no longer leased to this
    replica (a no-op outside an engine send)."""
    check = _fence.get()
    if check is not None:
        await check()


def set_fence(check: Callable[[], Awaitable[None]] | None) -> object:
    """Install the current send's lease check; returns a token for `reset_fence`."""
    return _fence.set(check)


def reset_fence(token: object) -> None:
    """Remove the check installed by `set_fence`."""
    _fence.reset(token)  # type: ignore[arg-type]
