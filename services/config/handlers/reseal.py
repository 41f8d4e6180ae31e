"""Key rotation: re-seal every secret under the first key of STAGGER_SECRET_KEY."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from services.config.domain import aggregates
from services.config.domain.outcomes import VersionMismatch
from shared.domain.site_settings import flatten
from shared.eventstore import ConcurrencyConflict
from shared.secrets import SecretBox, SecretKeyError, is_sealed

if TYPE_CHECKING:
    from services.config.handlers.settings import ConfigHandlers


def stale_secrets(box: SecretBox, flat: Mapping[str, Any], where: str) -> dict[str, str]:
    """The sealed values of `flat` not under the first key, opened: a plaintext patch that
    the usual `seal_patch` seals again, under the first key.

    SecretKeyError names the aggregate and the field when no configured key opens one.
    """
    patch = {}
    for path, value in flat.items():
        if is_sealed(value) and not box.under_primary(value):
            try:
                patch[path] = box.open(value)
            except SecretKeyError:
                raise SecretKeyError(
                    f"{where}: {path} was sealed with a key that is not in "
                    "STAGGER_SECRET_KEY; nothing was re-sealed"
                ) from None
    return patch


async def stale_aggregates(handlers: ConfigHandlers) -> list[str]:
    """Every aggregate holding a secret that is not under the first key (nothing written).

    Raises SecretKeyError, naming it, if any secret cannot be opened at all, so a reseal
    stops before writing anything.
    """
    stale = []
    for group_id in await handlers.store.group_ids():
        group = await handlers.store.group(group_id)
        if group is not None and stale_secrets(
            handlers.box, flatten(group.defaults.model_dump(mode="json")), f"group {group_id}"
        ):
            stale.append(f"group {group_id}")
        for site_id in await handlers.store.site_ids(group_id):
            site = await handlers.store.site(site_id)
            if site is not None and stale_secrets(
                handlers.box, flatten(site.settings.model_dump(mode="json")), f"site {site_id}"
            ):
                stale.append(f"site {site_id}")
    return stale


async def reseal(handlers: ConfigHandlers, *, actor: str) -> list[str]:
    """Re-seal every secret under the first key of STAGGER_SECRET_KEY (key rotation).

    Per group: one defaults event if its defaults hold an old secret, the follow-up events
    of the sites inheriting them, then one settings event per site whose own secrets are
    old. Each append checks the version it read (a concurrent change is re-read and
    retried) and records `actor`. Returns the aggregates written to.
    """
    await stale_aggregates(handlers)
    written = []
    note = "secrets re-sealed under the current key"
    for group_id in await handlers.store.group_ids():
        site_ids = await handlers.store.site_ids(group_id)
        for _attempt in range(5):
            group = await handlers.group(group_id)
            patch = stale_secrets(
                handlers.box, flatten(group.defaults.model_dump(mode="json")), f"group {group_id}"
            )
            data = (
                aggregates.decide_group_defaults(group, handlers.seal_patch(patch))
                if patch
                else None
            )
            if data is None:
                break
            try:
                await handlers.store.append_group(group_id, data, group.version, actor=actor)
                written.append(f"group {group_id}")
                break
            except ConcurrencyConflict:
                continue
        written += [
            f"site {s}"
            for s in await handlers.follow_group(group_id, actor=actor, site_ids=site_ids)
        ]
        for site_id in site_ids:
            for _attempt in range(5):
                site = await handlers.site(site_id)
                patch = stale_secrets(handlers.box, site.overrides, f"site {site_id}")
                if not patch:
                    break
                try:
                    await handlers.change_site(
                        site_id, site.version, patch, [], actor=actor, note=note, flat=True
                    )
                    written.append(f"site {site_id}")
                    break
                except (ConcurrencyConflict, VersionMismatch):
                    continue
    return sorted(set(written))
