"""Composition root of the local SMTP sink: builds the Sent folder, the handler and the server."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from services.smtp_sink.adapters.sent_folder import SentFolder
from services.smtp_sink.config import SinkConfig
from services.smtp_sink.domain.received import Received
from services.smtp_sink.entrypoints.smtp import SinkServer
from services.smtp_sink.handlers.sink import Script, SinkHandler

log = logging.getLogger("smtp_sink")


def build_server(
    settings: SinkConfig,
    directory: Path | None,
    *,
    keep_data: bool = False,
    script: Script | None = None,
) -> SinkServer:
    """The sink with its handler and, when configured, its IMAP Sent folder.

    `keep_data` keeps each message's bytes in memory and `script` answers instead of the sink
    at a stage (both for tests).
    """
    handler = SinkHandler(
        directory=directory,
        store=settings.store,
        reply_delay=settings.reply_delay_seconds,
        reject=settings.reject_recipients,
        sent=SentFolder(settings.sent_imap_url) if settings.sent_imap_url else None,
        keep_data=keep_data,
        script=script,
        pipelining=settings.pipelining,
    )
    return SinkServer(settings, handler)


async def run(settings: SinkConfig, directory: Path) -> int:
    """Serve until SIGTERM/SIGINT."""
    server = build_server(settings, directory)

    def announce(record: Received) -> None:
        log.info(
            "accepted %s from %s to %s (%d bytes)",
            record.message_id,
            record.mail_from,
            ", ".join(record.rcpt_tos),
            record.size,
        )

    server.handler.listeners.append(announce)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "SMTP sink listening on %s:%d (%s); mail kept in %s",
        settings.host,
        settings.port,
        settings.tls,
        directory,
    )
    await stop.wait()
    await server.stop()
    return 0


def main() -> None:
    """Process entry point."""
    from shared.config import load_config
    from shared.logs import configure_logging

    stagger = load_config()
    configure_logging("smtp_sink", stagger.log_level, stagger.log_format)
    settings = SinkConfig()
    directory = settings.dir or stagger.var_dir / "smtp-sink"
    sys.exit(asyncio.run(run(settings, directory.expanduser().resolve())))
