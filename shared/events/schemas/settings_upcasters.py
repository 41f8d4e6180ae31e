"""Upcasters of the settings events: data written at an older version, in today's shape.

v1 → v2: the settings snapshot became the typed `SiteSettings` (it was a plain dict). v1 data is
what `SiteSettings.model_dump` gave at the time, so it keeps its shape; only snapshots written
before the model had `sms.provider.webhook_secret` lack that key, and get it unset.
"""

from __future__ import annotations

from typing import Any

from shared.events.registry import Upcaster, registry

SNAPSHOT_FIELDS = {
    "stagger.group.created": "defaults",
    "stagger.group.defaults_changed": "defaults",
    "stagger.site.created": "settings",
    "stagger.site.settings_changed": "settings",
}
"""Each settings event type → the field holding its snapshot."""


def _webhook_secret_unset(snapshot: Any) -> Any:
    if not isinstance(snapshot, dict):
        return snapshot  # not a snapshot at all: validation names the field
    sms = snapshot.get("sms")
    if not isinstance(sms, dict):
        return snapshot
    provider = sms.get("provider")
    if not isinstance(provider, dict) or "webhook_secret" in provider:
        return snapshot
    return {**snapshot, "sms": {**sms, "provider": {**provider, "webhook_secret": None}}}


def _v1_to_v2(field: str) -> Upcaster:
    def upcast(data: dict[str, Any]) -> dict[str, Any]:
        if field not in data:
            return data
        return {**data, field: _webhook_secret_unset(data[field])}

    return upcast


for _type, _field in SNAPSHOT_FIELDS.items():
    registry.upcaster(_type, 1)(_v1_to_v2(_field))
