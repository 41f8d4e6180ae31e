"""Every settings class in the project, so docs tests can check the README table."""

from __future__ import annotations

import importlib

from pydantic_settings import BaseSettings

from shared.config import StaggerSettings

# Services with settings of their own add their module here.
SETTINGS_MODULES: tuple[str, ...] = (
    "services.sms_provider_sim.config",
    "services.scheduler.config",
    "services.sms_gateway.config",
    "services.email_gateway.config",
    "services.smtp_sink.config",
    "shared.tracing",
)


def all_settings_classes() -> list[type[BaseSettings]]:
    """StaggerSettings plus each service's own settings class (`Settings` in its module)."""
    classes: list[type[BaseSettings]] = [StaggerSettings]
    for module_name in SETTINGS_MODULES:
        module = importlib.import_module(module_name)
        classes.append(module.Settings)
    return classes
