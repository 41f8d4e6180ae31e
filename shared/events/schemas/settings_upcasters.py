"""Upcasters of the settings events: data written at an older version, in today's shape.

v1 → v2: the settings snapshot became the typed `SiteSettings` (it was a plain dict). v1 data is
what `SiteSettings.model_dump` gave at the time, so it keeps its shape; only snapshots written
before the model had `sms.provider.webhook_secret` lack that key, and get it unset.

v2 → v3: email sign-in over OAuth 2.0 and the Graph transport (`email.sign_in`,
`email.transport`) and the allow-list of unsigned provider webhooks
(`sms.provider.webhook_sources`). A v2 snapshot signed in with a password over SMTP and allowed
any source, so those are filled in as the values written here (frozen: never the live model's
defaults).

v3 → v4: a secondary SMS provider account to fail over to (`sms.secondary_provider`) and how
long an outage of the primary lasts before it does (`sms.failover_after_seconds`). A v3 site
had no secondary, so it gets the account kind `none` (no failover) and the 300 s written here.

v4 → v5: consent categories (`consent`). A v4 group had the two categories service and
marketing and no phrases of its own, so the section is filled in as written here.

v5 → v6: the STOP confirmation and HELP answer texts (`sms.stop_confirmation`,
`sms.help_reply`). A v5 snapshot set neither: both come up unset (the region's texts).
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


V2_SIGN_IN = {
    "method": "password",
    "tenant_id": None,
    "client_id": None,
    "client_secret": None,
    "certificate": None,
    "service_account_key": None,
    "refresh_token": None,
    "token_url": None,
    "scope": None,
    "user": None,
    "graph_url": None,
}
"""What a v2 snapshot meant for email sign-in: a password, nothing else."""


def _v2_snapshot_to_v3(snapshot: Any) -> Any:
    if not isinstance(snapshot, dict):
        return snapshot  # not a snapshot at all: validation names the field
    out = dict(snapshot)
    email = out.get("email")
    if isinstance(email, dict):
        out["email"] = {"sign_in": dict(V2_SIGN_IN), "transport": "smtp", **email}
    sms = out.get("sms")
    if isinstance(sms, dict) and isinstance(sms.get("provider"), dict):
        out["sms"] = {**sms, "provider": {"webhook_sources": [], **sms["provider"]}}
    return out


def _v2_to_v3(field: str) -> Upcaster:
    def upcast(data: dict[str, Any]) -> dict[str, Any]:
        if field not in data:
            return data
        return {**data, field: _v2_snapshot_to_v3(data[field])}

    return upcast


for _type, _field in SNAPSHOT_FIELDS.items():
    registry.upcaster(_type, 2)(_v2_to_v3(_field))


V3_NO_SECONDARY: dict[str, Any] = {
    "kind": "none",
    "account_id": None,
    "secret": None,
    "webhook_secret": None,
    "base_url": None,
    "webhook_sources": [],
    "rate_per_second": 1.0,
    "credits_per_segment": 1.0,
    "locked": False,
}
"""What a v3 snapshot meant for the secondary SMS account: none, so no failover."""

V3_FAILOVER_AFTER_SECONDS = 300.0


def _v3_snapshot_to_v4(snapshot: Any) -> Any:
    if not isinstance(snapshot, dict):
        return snapshot  # not a snapshot at all: validation names the field
    sms = snapshot.get("sms")
    if not isinstance(sms, dict):
        return snapshot
    filled = {
        "secondary_provider": dict(V3_NO_SECONDARY),
        "failover_after_seconds": V3_FAILOVER_AFTER_SECONDS,
        **sms,
    }
    return {**snapshot, "sms": filled}


def _v3_to_v4(field: str) -> Upcaster:
    def upcast(data: dict[str, Any]) -> dict[str, Any]:
        if field not in data:
            return data
        return {**data, field: _v3_snapshot_to_v4(data[field])}

    return upcast


for _type, _field in SNAPSHOT_FIELDS.items():
    registry.upcaster(_type, 3)(_v3_to_v4(_field))


V4_CATEGORIES = ("service", "marketing")
"""What a v4 snapshot meant for consent: these two categories (and the default phrases)."""


def _v4_to_v5(field: str) -> Upcaster:
    def upcast(data: dict[str, Any]) -> dict[str, Any]:
        snapshot = data.get(field)
        if not isinstance(snapshot, dict) or "consent" in snapshot:
            return data  # absent or not a snapshot: validation names the field
        consent = {"categories": list(V4_CATEGORIES), "optout_phrases": None}
        return {**data, field: {**snapshot, "consent": consent}}

    return upcast


for _type, _field in SNAPSHOT_FIELDS.items():
    registry.upcaster(_type, 4)(_v4_to_v5(_field))


def _v5_snapshot_to_v6(snapshot: Any) -> Any:
    if not isinstance(snapshot, dict):
        return snapshot  # not a snapshot at all: validation names the field
    sms = snapshot.get("sms")
    if not isinstance(sms, dict):
        return snapshot
    return {**snapshot, "sms": {"stop_confirmation": None, "help_reply": None, **sms}}


def _v5_to_v6(field: str) -> Upcaster:
    def upcast(data: dict[str, Any]) -> dict[str, Any]:
        if field not in data:
            return data
        return {**data, field: _v5_snapshot_to_v6(data[field])}

    return upcast


for _type, _field in SNAPSHOT_FIELDS.items():
    registry.upcaster(_type, 5)(_v5_to_v6(_field))
