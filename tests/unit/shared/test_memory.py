"""The malloc arena cap a service applies at start."""

from __future__ import annotations

import os
import platform

import pytest

from shared.config import StaggerConfig
from shared.runtime.memory import limit_malloc_arenas


def test_zero_leaves_glibc_alone() -> None:
    assert limit_malloc_arenas(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_cap() -> None:
    # Eight per core is glibc's own ceiling, so the test process keeps its behaviour.
    assert limit_malloc_arenas(8 * len(os.sched_getaffinity(0))) is True


def test_setting_defaults_to_two_and_rejects_negatives(monkeypatch: pytest.MonkeyPatch) -> None:
    assert StaggerConfig().malloc_arenas == 2
    monkeypatch.setenv("STAGGER_MALLOC_ARENAS", "-1")
    with pytest.raises(ValueError, match="malloc_arenas"):
        StaggerConfig()
