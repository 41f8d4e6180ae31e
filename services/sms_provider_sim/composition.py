"""Composition root of the SMS provider simulator: process configuration, logging, the server."""

from __future__ import annotations

import asyncio

from services.sms_provider_sim.config import Settings
from services.sms_provider_sim.entrypoints.server import serve
from shared.config import StaggerSettings
from shared.logs import configure_logging


def main() -> int:
    """Exit code 0 after a clean shutdown, 1 if the server could not start."""
    common = StaggerSettings()
    configure_logging("sms_sim", common.log_level, common.log_format)
    started = asyncio.run(serve(Settings()))
    return 0 if started else 1
