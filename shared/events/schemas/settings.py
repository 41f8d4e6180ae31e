"""Group and site settings events (the SETTINGS stream, one subject per aggregate).

Every change records who changed what from what to what (`changes`) and carries the complete
resulting settings, so a consumer never folds history to act. Secrets inside are sealed
(`enc:v1:…`); in `changes` a secret's old and new values are shown only as set/unset.

The snapshot is the typed `SiteSettings` model, so the model is part of these events' schema:
changing it means a new `SNAPSHOT_VERSION` of all four events and an upcaster from the previous
one (`shared.events.schemas.settings_upcasters`); `tests/unit/shared/test_settings_snapshot.py`
fails until both are done.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.domain.site_settings import SiteSettings
from shared.events.envelope import EventData
from shared.events.registry import registry
from shared.events.schemas import settings_upcasters  # noqa: F401  (registers the upcasters)

SNAPSHOT_VERSION = 6
"""The version of every settings event: it changes whenever `SiteSettings` does."""

SNAPSHOT_FINGERPRINTS: dict[int, str] = {
    2: "6c02695ed64719b8d452604e81a2c5139319a759117b09686a10ee7a8574133a",
    3: "5867801645650a98f21d1190d5534aa710c9ebd4afee4cd5349352182282f8de",
    4: "be82a8b9776837890009e12cd8a222f2dbe693905bf2a31f76f8f519ba1c8629",
    5: "ae613392e366c5eb39556e6453d46afac62b00eebff3fcd3ce0a8d31ed58af94",
    6: "5ed25f9557f0674637d64bd3bc97470fad7f937302a9ea484b434e3b9ff7b3be",
}
"""Fingerprint of `SiteSettings`' JSON schema (documentation text left out) at each version
since the snapshot was typed; a released entry never changes."""

_DOCUMENTATION = frozenset({"title", "description", "examples"})


def _structure(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_structure(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    kept = {}
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            # Names of fields and models, not keywords: a field called `title` stays.
            kept[key] = {name: _structure(sub) for name, sub in value.items()}
        elif key not in _DOCUMENTATION:
            kept[key] = _structure(value)
    return kept


def snapshot_fingerprint(model: type[BaseModel] = SiteSettings) -> str:
    """SHA-256 of the model's JSON schema without its documentation text: it changes when a
    field, type, default or constraint does, not when a description is reworded."""
    canonical = json.dumps(_structure(model.model_json_schema()), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Change(BaseModel):
    """One setting's change; `inherited` says whether the site now takes the group's value."""

    model_config = ConfigDict(frozen=True)

    path: str
    old: Any = None
    new: Any = None
    inherited: bool = False


class Warning_(BaseModel):
    """Allowed but probably wrong, naming the field."""

    model_config = ConfigDict(frozen=True)

    field: str
    message: str


@registry.register
class GroupCreated(EventData):
    """A dental group was created with defaults for every setting of its sites."""

    event_type = "stagger.group.created"
    event_version = SNAPSHOT_VERSION

    group_id: str
    name: str
    defaults: SiteSettings


@registry.register
class GroupDefaultsChanged(EventData):
    """A group's defaults changed; sites that inherit the changed fields follow (see
    `stagger.site.settings_changed` with cause `group_default`)."""

    event_type = "stagger.group.defaults_changed"
    event_version = SNAPSHOT_VERSION

    group_id: str
    changes: list[Change]
    defaults: SiteSettings


@registry.register
class SiteCreated(EventData):
    """A site was created in a group."""

    event_type = "stagger.site.created"
    event_version = SNAPSHOT_VERSION

    group_id: str
    site_id: str
    overrides: dict[str, Any]
    settings: SiteSettings
    group_version: int
    warnings: list[Warning_] = []


@registry.register
class SiteSettingsChanged(EventData):
    """A site's effective settings changed: by a person (`site`) or by its group's defaults."""

    event_type = "stagger.site.settings_changed"
    event_version = SNAPSHOT_VERSION

    group_id: str
    site_id: str
    cause: Literal["site", "group_default", "provider_test"]
    changes: list[Change]
    overrides: dict[str, Any]
    settings: SiteSettings
    group_version: int
    warnings: list[Warning_] = []
    note: str | None = None
