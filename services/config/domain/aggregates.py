"""Group and site aggregates: their state, and the decisions that turn commands into events.

Pure: state comes in (rebuilt from the last event of the aggregate's subject, which carries the
full snapshot), a command is decided, and event data — or a `SettingsError` naming each bad
field — comes out. Appending, sealing secrets and authorising happen in `handlers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain.site_settings import (
    GROUP_ONLY_PATHS,
    SECRET_PATHS,
    SITE_ONLY_PATHS,
    SYSTEM_PATHS,
    SettingsError,
    SiteSettings,
    Window,
    build,
    diff,
    effective,
    flatten,
    settable_paths,
    unflatten,
    warnings,
)
from shared.events.envelope import Envelope
from shared.events.schemas.settings import (
    Change,
    GroupCreated,
    GroupDefaultsChanged,
    SiteCreated,
    SiteSettingsChanged,
    Warning_,
)


@dataclass(frozen=True)
class GroupState:
    """A group as of its last event."""

    group_id: str
    name: str
    defaults: SiteSettings
    version: int


@dataclass(frozen=True)
class SiteState:
    """A site as of its last event."""

    group_id: str
    site_id: str
    overrides: dict[str, Any]
    settings: SiteSettings
    group_version: int
    version: int

    @property
    def name(self) -> str:
        """The site's name."""
        return self.settings.profile.name

    def inherited_paths(self) -> list[str]:
        """Settings the site takes from its group."""
        return sorted(settable_paths() - set(self.overrides))


def group_from_event(event: Envelope) -> GroupState:
    """Rebuild a group from its last event."""
    data = event.data
    assert isinstance(data, GroupCreated | GroupDefaultsChanged)
    name = data.name if isinstance(data, GroupCreated) else ""
    return GroupState(data.group_id, name, data.defaults, event.sequence or 0)


def site_from_event(event: Envelope) -> SiteState:
    """Rebuild a site from its last event."""
    data = event.data
    assert isinstance(data, SiteCreated | SiteSettingsChanged)
    return SiteState(
        data.group_id,
        data.site_id,
        dict(data.overrides),
        data.settings,
        data.group_version,
        event.sequence or 0,
    )


def _changes(
    old: SiteSettings | None,
    new: SiteSettings,
    inherited_now: Iterable[str] = (),
) -> list[Change]:
    inherited = set(inherited_now)
    changes = []
    for path, before, after in diff(old, new):
        if path in SECRET_PATHS:
            # Never the sealed values themselves: only whether a secret is set.
            before = "(set)" if before else None
            after = "(changed)" if after else None
        changes.append(Change(path=path, old=before, new=after, inherited=path in inherited))
    return changes


def _warnings(settings: SiteSettings) -> list[Warning_]:
    return [Warning_(**w) for w in warnings(settings)]


def _check_user_paths(paths: Iterable[str], *, site: bool) -> None:
    errors = {}
    for path in paths:
        if path in SYSTEM_PATHS:
            errors[path] = "set by Stagger itself (a successful provider test), not editable"
        elif not site and path in SITE_ONLY_PATHS:
            errors[path] = "belongs to each site; a group cannot default it"
        elif site and path in GROUP_ONLY_PATHS:
            errors[path] = "set for the whole group (opt-outs span its sites), not per site"
    if errors:
        raise SettingsError(errors)


def decide_create_group(group_id: str, name: str, patch: Mapping[str, Any]) -> GroupCreated:
    """A new group with defaults (built-in defaults plus `patch`)."""
    _check_user_paths(patch, site=False)
    if not name.strip():
        raise SettingsError({"name": "a group needs a name"})
    base = flatten(SiteSettings().model_dump(mode="json"))
    base.update(patch)
    defaults = build(unflatten(base))
    return GroupCreated(group_id=group_id, name=name.strip(), defaults=defaults)


def decide_group_defaults(
    group: GroupState, patch: Mapping[str, Any]
) -> GroupDefaultsChanged | None:
    """Change a group's defaults; None if nothing actually changes."""
    _check_user_paths(patch, site=False)
    base = flatten(group.defaults.model_dump(mode="json"))
    base.update(patch)
    defaults = build(unflatten(base))
    changes = _changes(group.defaults, defaults)
    if not changes:
        return None
    return GroupDefaultsChanged(group_id=group.group_id, changes=changes, defaults=defaults)


def decide_create_site(
    group: GroupState, site_id: str, overrides: Mapping[str, Any]
) -> SiteCreated:
    """A new site of `group` with its own overrides (name, time zone, region at least)."""
    _check_user_paths(overrides, site=True)
    if not str(overrides.get("profile.name", "")).strip():
        raise SettingsError({"profile.name": "a site needs a name"})
    settings = effective(group.defaults, overrides)
    return SiteCreated(
        group_id=group.group_id,
        site_id=site_id,
        overrides=dict(overrides),
        settings=settings,
        group_version=group.version,
        warnings=_warnings(settings),
    )


def decide_site_change(
    site: SiteState,
    group: GroupState,
    patch: Mapping[str, Any],
    inherit: Iterable[str] = (),
    *,
    note: str | None = None,
    system_patch: Mapping[str, Any] | None = None,
) -> SiteSettingsChanged | None:
    """Change a site's settings; None if nothing actually changes.

    `patch` overrides fields; `inherit` returns fields to the group's value. `system_patch`
    carries fields only Stagger sets (the provider lock), already authorised by the caller.
    """
    inherit = list(inherit)
    _check_user_paths([*patch, *inherit], site=True)
    unknown = [p for p in inherit if p not in settable_paths()]
    if unknown:
        raise SettingsError({p: "no such setting" for p in unknown})
    if "profile.name" in inherit:
        raise SettingsError({"profile.name": "a site's name cannot be inherited"})
    unlocking = (system_patch or {}).get("sms.provider.locked") is False
    new_account = patch.get("sms.provider.account_id", site.settings.sms.provider.account_id)
    if (
        site.settings.sms.provider.locked
        and not unlocking
        and new_account != site.settings.sms.provider.account_id
    ):
        raise SettingsError(
            {
                "sms.provider.account_id": "locked after a successful provider test; "
                "unlock the provider first (group admin)"
            }
        )
    overrides = {k: v for k, v in site.overrides.items() if k not in inherit}
    overrides.update(patch)
    overrides.update(system_patch or {})
    new_settings = effective(group.defaults, overrides)
    changes = _changes(site.settings, new_settings, inherited_now=inherit)
    if not changes:
        return None
    return SiteSettingsChanged(
        group_id=site.group_id,
        site_id=site.site_id,
        cause="provider_test" if system_patch else "site",
        changes=changes,
        overrides=overrides,
        settings=new_settings,
        group_version=group.version,
        warnings=_warnings(new_settings),
        note=note,
    )


def decide_follow_group(site: SiteState, group: GroupState) -> SiteSettingsChanged | None:
    """Bring a site's effective settings in line with its group's current defaults."""
    if site.group_version >= group.version:
        return None
    new_settings = effective(group.defaults, site.overrides)
    changes = _changes(site.settings, new_settings)
    if not changes:
        return None
    return SiteSettingsChanged(
        group_id=site.group_id,
        site_id=site.site_id,
        cause="group_default",
        changes=[Change(**{**c.model_dump(), "inherited": True}) for c in changes],
        overrides=site.overrides,
        settings=new_settings,
        group_version=group.version,
        warnings=_warnings(new_settings),
    )


def windows_patch(
    site: SiteState,
    path: str,
    *,
    add: Window | None = None,
    remove: str | None = None,
    replace: list[Window] | None = None,
) -> dict[str, Any]:
    """A patch adding, removing or replacing one weekly window list (sessions, blackouts)."""
    node: Any = site.settings
    for part in path.split("."):
        node = getattr(node, part)
    current: list[Window] = list(node)
    if replace is not None:
        windows = replace
    elif add is not None:
        windows = [*current, add]
    else:
        kept = [w for w in current if w.id != remove]
        if len(kept) == len(current):
            raise SettingsError({path: f"no window with id {remove!r}"})
        windows = kept
    return {path: [w.model_dump(mode="json") for w in windows]}
