"""Which event types exist, at which version, and how old versions are brought up to date.

An upcaster turns the JSON data of version N into the JSON data of version N+1. Loading an old
event applies the chain N → N+1 → … → current, so code only ever sees the current shape and the
log itself is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.events.envelope import EventData

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    """The event's type is not registered in this build."""


class UnsupportedEventVersion(LookupError):
    """The event is newer than this build understands, or an upcaster is missing."""


class EventRegistry:
    """Maps event type names to their data classes and upcasters."""

    def __init__(self) -> None:
        self._classes: dict[str, type[EventData]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[EventData]) -> type[EventData]:
        """Register a data class (usable as a class decorator)."""
        name = cls.type_name()
        if not name:
            raise ValueError(f"{cls.__name__} has no event_type")
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"event type {name} registered twice ({existing.__name__}, {cls.__name__})"
            )
        self._classes[name] = cls
        return cls

    def upcaster(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register the function that turns `from_version` data into `from_version + 1` data."""

        def decorate(fn: Upcaster) -> Upcaster:
            key = (type_name, from_version)
            if key in self._upcasters:
                raise ValueError(f"upcaster for {type_name} v{from_version} registered twice")
            self._upcasters[key] = fn
            return fn

        return decorate

    def data_class(self, type_name: str) -> type[EventData]:
        """The current data class of a type."""
        try:
            return self._classes[type_name]
        except KeyError:
            raise UnknownEventType(type_name) from None

    def known_types(self) -> dict[str, type[EventData]]:
        """Every registered type, for the event catalogue."""
        return dict(sorted(self._classes.items()))

    def upcast(self, type_name: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Bring `data` written at `version` up to the current version of the type."""
        current = self.data_class(type_name).version()
        if version > current:
            raise UnsupportedEventVersion(f"{type_name} v{version} is newer than v{current}")
        while version < current:
            try:
                step = self._upcasters[(type_name, version)]
            except KeyError:
                raise UnsupportedEventVersion(
                    f"no upcaster from {type_name} v{version} to v{version + 1}"
                ) from None
            data = step(data)
            version += 1
        return data

    def missing_upcasters(self) -> list[str]:
        """Gaps in upcaster chains (a test keeps this empty)."""
        gaps = []
        for name, cls in self._classes.items():
            for version in range(1, cls.version()):
                if (name, version) not in self._upcasters:
                    gaps.append(f"{name} v{version}->v{version + 1}")
        return gaps


registry = EventRegistry()
"""The process-wide registry; event modules register into it on import."""
