"""What a rewrite set out to do, kept in NATS until the audit trail is rebuilt.

A run stopped half-way (after AUDIT was created again, before the trail was rebuilt) must not
leave a trail that no longer matches its stream, nor lose the old trail's heads, which only
the first run could read. So the first run stores its plan (the old heads, the survey's
counts, the id its record will carry) in a stream of its own before changing anything, and
the plan is deleted only once the trail is rebuilt: a new run that finds one resumes it.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

PLAN_STREAM = "REWRITE_PLAN"
PLAN_SUBJECT = "_stagger.rewrite.plan"


@dataclass(frozen=True)
class Plan:
    """A rewrite under way."""

    event_id: str
    actor: str
    counts: list[dict[str, Any]]
    """Per origin stream: messages, and how many held personal data in clear."""
    audit_before: int
    audit_expired: int
    heads: list[dict[str, Any]]
    """The old trail's chain heads."""
    old_records: int


async def load_plan(js: JetStreamContext) -> Plan | None:
    """The plan of an unfinished rewrite, if there is one."""
    try:
        msg = await js.get_msg(PLAN_STREAM, subject=PLAN_SUBJECT)
    except NotFoundError:
        return None
    return Plan(**json.loads(msg.data or b"{}"))


async def save_plan(js: JetStreamContext, plan: Plan) -> None:
    """Keep `plan` until `forget_plan`."""
    await js.add_stream(
        StreamConfig(
            name=PLAN_STREAM,
            description="The plan of a `stagger privacy rewrite-streams` under way.",
            subjects=[PLAN_SUBJECT],
            storage=StorageType.FILE,
        )
    )
    await js.publish(PLAN_SUBJECT, json.dumps(asdict(plan), default=str).encode())


async def forget_plan(js: JetStreamContext) -> None:
    """The rewrite is finished."""
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(PLAN_STREAM)
