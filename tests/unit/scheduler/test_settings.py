"""The scheduler's own settings come from STAGGER_SCHEDULER_* variables."""

from __future__ import annotations

import pytest

from services.scheduler.config import SchedulerConfig


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SchedulerConfig().account_tick_seconds == 1.0
    monkeypatch.setenv("STAGGER_SCHEDULER_ACCOUNT_TICK_SECONDS", "0.25")
    monkeypatch.setenv("STAGGER_SCHEDULER_GRACE_SECONDS", "3")
    loaded = SchedulerConfig()
    assert (loaded.account_tick_seconds, loaded.grace_seconds) == (0.25, 3.0)


def test_every_setting_is_described() -> None:
    for name, field in SchedulerConfig.model_fields.items():
        assert field.description, f"{name} has no description"
