"""Composition root of the SMS provider simulator: builds its parts, the app and the process."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.sms_provider_sim.adapters.persistence import Persister
from services.sms_provider_sim.adapters.store import Store
from services.sms_provider_sim.adapters.webhooks import WebhookSender
from services.sms_provider_sim.config import SimulatorConfig
from services.sms_provider_sim.domain.faults import FaultInjector
from services.sms_provider_sim.domain.ratelimit import RateLimiter
from services.sms_provider_sim.entrypoints.app import create_app
from services.sms_provider_sim.entrypoints.server import serve
from services.sms_provider_sim.handlers.simulator import Simulator
from shared.config import StaggerConfig
from shared.logs import configure_logging


def build_simulator(settings: SimulatorConfig) -> Simulator:
    """The simulator and every part it uses, each built once."""
    store = Store()
    persister = (
        Persister(settings.state_file, store.snapshot) if settings.state_file is not None else None
    )
    return Simulator(
        settings,
        store=store,
        faults=FaultInjector(settings.seed),
        limiter=RateLimiter(),
        webhooks=WebhookSender(store.webhook_attempts),
        persister=persister,
    )


def build_app(settings: SimulatorConfig | None = None) -> FastAPI:
    """The simulator as an ASGI app, e.g. to run it in-process."""
    return create_app(build_simulator(settings or SimulatorConfig()))


def main() -> int:
    """Exit code 0 after a clean shutdown, 1 if the server could not start."""
    common = StaggerConfig()
    configure_logging("sms_sim", common.log_level, common.log_format)
    settings = SimulatorConfig()
    started = asyncio.run(serve(settings, build_app(settings)))
    return 0 if started else 1
