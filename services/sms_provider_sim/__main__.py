"""`python -m services.sms_provider_sim`: run the SMS provider simulator (see settings.py)."""

from __future__ import annotations

import asyncio
import sys

from services.sms_provider_sim.server import serve
from services.sms_provider_sim.settings import Settings
from shared.config import StaggerSettings
from shared.logs import configure_logging


def main() -> int:
    """Exit code 0 after a clean shutdown, 1 if the server could not start."""
    common = StaggerSettings()
    configure_logging("sms_sim", common.log_level, common.log_format)
    started = asyncio.run(serve(Settings()))
    return 0 if started else 1


if __name__ == "__main__":
    sys.exit(main())
