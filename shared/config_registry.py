"""Every process-configuration class in the project, so docs tests can check the README table."""

from __future__ import annotations

import importlib

from pydantic_settings import BaseSettings

from shared.config import StaggerConfig

# Services with configuration of their own add their module and class here.
CONFIG_CLASSES: tuple[tuple[str, str], ...] = (
    ("services.sms_provider_sim.config", "SimulatorConfig"),
    ("services.config.config", "AlertConfig"),
    ("services.scheduler.config", "SchedulerConfig"),
    ("services.sms_gateway.config", "GatewayConfig"),
    ("services.email_gateway.config", "EmailGatewayConfig"),
    ("services.smtp_sink.config", "SinkConfig"),
    ("shared.tracing", "TracingConfig"),
)


def all_config_classes() -> list[type[BaseSettings]]:
    """StaggerConfig plus each service's own process configuration class."""
    classes: list[type[BaseSettings]] = [StaggerConfig]
    for module_name, class_name in CONFIG_CLASSES:
        classes.append(getattr(importlib.import_module(module_name), class_name))
    return classes
