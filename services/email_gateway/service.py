"""The runtime's entry to the email gateway (`services.<name>.service.definition`, as for
every service); everything is built in `composition.py`."""

from __future__ import annotations

from services.email_gateway.composition import EmailGatewayService


def definition() -> EmailGatewayService:
    """The service as the runtime runs it."""
    return EmailGatewayService()
