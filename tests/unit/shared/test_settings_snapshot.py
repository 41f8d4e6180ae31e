"""The settings events carry `SiteSettings` itself, so the model is part of their schema.

Changing the model without a new event version would make old logs replay into a model that no
longer fits them (or new readers reject old events): these tests fail until the version is bumped,
an upcaster brings the previous version's data along and a sample of it is kept here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from shared.domain.site_settings import Closure, SiteSettings, SmsSettings
from shared.events.codec import decode
from shared.events.envelope import EventData
from shared.events.registry import registry
from shared.events.schemas.settings import (
    SNAPSHOT_FINGERPRINTS,
    SNAPSHOT_VERSION,
    GroupCreated,
    SiteCreated,
    snapshot_fingerprint,
)
from shared.events.schemas.settings_upcasters import SNAPSHOT_FIELDS

SAMPLES = Path(__file__).parent / "settings_events"

WHAT_TO_DO = f"""
SiteSettings changed, but the settings events are still v{SNAPSHOT_VERSION}. Old logs hold
snapshots of the previous shape, so:
  1. in shared/events/schemas/settings.py raise SNAPSHOT_VERSION to {SNAPSHOT_VERSION + 1} and add
     {SNAPSHOT_VERSION + 1}: "<new fingerprint>" to SNAPSHOT_FINGERPRINTS (never edit an old entry);
  2. in shared/events/schemas/settings_upcasters.py register, for each of the four types in
     SNAPSHOT_FIELDS, an upcaster from v{SNAPSHOT_VERSION} that turns an old snapshot into the new
     shape (fill new fields, rename or drop old ones);
  3. keep a sample of v{SNAPSHOT_VERSION} events in tests/unit/shared/settings_events/
     v{SNAPSHOT_VERSION}.json (the four types, as the code before your change wrote them);
  4. regenerate docs: `stagger docs events` and `stagger docs asyncapi`.
"""


def snapshot_events() -> dict[str, type[EventData]]:
    """Every registered event type with a field holding `SiteSettings`."""
    return {
        name: cls
        for name, cls in registry.known_types().items()
        if any(f.annotation is SiteSettings for f in cls.model_fields.values())
    }


def samples(version: int) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((SAMPLES / f"v{version}.json").read_text())
    return loaded


def test_the_settings_model_is_unchanged_since_the_events_version() -> None:
    assert snapshot_fingerprint() == SNAPSHOT_FINGERPRINTS.get(SNAPSHOT_VERSION), (
        f"fingerprint now {snapshot_fingerprint()}\n{WHAT_TO_DO}"
    )


def test_every_event_carrying_the_model_is_at_the_snapshot_version() -> None:
    events = snapshot_events()
    assert set(events) == set(SNAPSHOT_FIELDS), (
        "an event carries SiteSettings: list it in SNAPSHOT_FIELDS with its upcasters"
    )
    assert {cls.version() for cls in events.values()} == {SNAPSHOT_VERSION}
    assert max(SNAPSHOT_FINGERPRINTS) == SNAPSHOT_VERSION


def test_every_older_version_has_an_upcaster_and_a_sample() -> None:
    for version in range(1, SNAPSHOT_VERSION):
        kept = {sample["type"] for sample in samples(version)}
        assert kept == {f"{name}.v{version}" for name in SNAPSHOT_FIELDS}, WHAT_TO_DO
    assert registry.missing_upcasters() == [], WHAT_TO_DO


@pytest.mark.parametrize("version", range(1, SNAPSHOT_VERSION))
def test_old_settings_events_replay_as_current_ones(version: int) -> None:
    for sample in samples(version):
        headers = {
            "ce-type": sample["type"],
            "ce-id": "e-1",
            "ce-source": "stagger.config",
            "ce-time": "2026-11-27T09:00:00+00:00",
        }
        event = decode(headers, json.dumps(sample["data"]).encode())
        assert event.version == SNAPSHOT_VERSION
        field = SNAPSHOT_FIELDS[event.type]
        snapshot = getattr(event.data, field)
        assert isinstance(snapshot, SiteSettings)
        written = sample["data"][field]
        assert snapshot.profile.name == written["profile"]["name"]
        assert snapshot.sms.every_minutes == written["sms"]["every_minutes"]
        assert snapshot.sms.provider.account_id == written["sms"]["provider"]["account_id"]


def test_a_snapshot_from_before_the_webhook_secret_comes_up_with_it_unset() -> None:
    (created,) = [s for s in samples(1) if s["type"] == "stagger.site.created.v1"]
    assert "webhook_secret" not in created["data"]["settings"]["sms"]["provider"]
    data = registry.upcast("stagger.site.created", 1, created["data"])
    assert data["settings"]["sms"]["provider"]["webhook_secret"] is None
    assert SiteCreated.model_validate(data).settings.sms.provider.kind == "simulator"


def test_a_snapshot_that_is_not_the_model_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"defaults\.sms\.every_minutes"):
        GroupCreated.model_validate(
            {"group_id": "g", "name": "G", "defaults": {"sms": {"every_minutes": "often"}}}
        )


def test_a_changed_model_changes_the_fingerprint_and_a_reworded_one_does_not() -> None:
    class WithAField(SiteSettings):
        backup_contact: str | None = None

    class WithAnotherDefault(SiteSettings):
        sms: SmsSettings = SmsSettings(every_minutes=10)

    class Reworded(SiteSettings):
        closures: list[Closure] = Field(default_factory=list, description="Bank holidays.")

    assert snapshot_fingerprint(WithAField) != snapshot_fingerprint()
    assert snapshot_fingerprint(WithAnotherDefault) != snapshot_fingerprint()
    assert snapshot_fingerprint(Reworded) == snapshot_fingerprint()


def test_a_v3_snapshot_comes_up_with_the_region_s_stop_and_help_texts() -> None:
    (created,) = [s for s in samples(3) if s["type"] == "stagger.site.created.v3"]
    assert "stop_confirmation" not in created["data"]["settings"]["sms"]
    data = registry.upcast("stagger.site.created", 3, created["data"])
    sms = SiteCreated.model_validate(data).settings.sms
    assert (sms.stop_confirmation, sms.help_reply) == (None, None)
