"""Group and site settings events (the SETTINGS stream, one subject per aggregate).

Every change records who changed what from what to what (`changes`) and carries the complete
resulting settings, so a consumer never folds history to act. Secrets inside are sealed
(`enc:v1:…`); in `changes` a secret's old and new values are shown only as set/unset.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.events.envelope import EventData
from shared.events.registry import registry


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
    event_version = 1

    group_id: str
    name: str
    defaults: dict[str, Any]


@registry.register
class GroupDefaultsChanged(EventData):
    """A group's defaults changed; sites that inherit the changed fields follow (see
    `stagger.site.settings_changed` with cause `group_default`)."""

    event_type = "stagger.group.defaults_changed"
    event_version = 1

    group_id: str
    changes: list[Change]
    defaults: dict[str, Any]


@registry.register
class SiteCreated(EventData):
    """A site was created in a group."""

    event_type = "stagger.site.created"
    event_version = 1

    group_id: str
    site_id: str
    overrides: dict[str, Any]
    settings: dict[str, Any]
    group_version: int
    warnings: list[Warning_] = []


@registry.register
class SiteSettingsChanged(EventData):
    """A site's effective settings changed: by a person (`site`) or by its group's defaults."""

    event_type = "stagger.site.settings_changed"
    event_version = 1

    group_id: str
    site_id: str
    cause: Literal["site", "group_default", "provider_test"]
    changes: list[Change]
    overrides: dict[str, Any]
    settings: dict[str, Any]
    group_version: int
    warnings: list[Warning_] = []
    note: str | None = None
