"""Composition root of the local SMTP sink: process configuration, logging, the server."""

from __future__ import annotations

import asyncio
import sys

from services.smtp_sink.config import Settings
from services.smtp_sink.entrypoints.smtp import run


def main() -> None:
    """Process entry point."""
    from shared.config import load_settings
    from shared.logs import configure_logging

    stagger = load_settings()
    configure_logging("smtp_sink", stagger.log_level, stagger.log_format)
    settings = Settings()
    directory = settings.dir or stagger.var_dir / "smtp-sink"
    sys.exit(asyncio.run(run(settings, directory.expanduser().resolve())))
