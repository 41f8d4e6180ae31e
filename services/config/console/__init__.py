"""The web console of the config service (`/console`): settings wizard, outbox, credits,
replies, opt-outs and the audit log, server-rendered with Jinja2 (see docs/console.md)."""

from services.config.console.app import Console

__all__ = ["Console"]
