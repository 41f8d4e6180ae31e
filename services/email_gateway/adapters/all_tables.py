"""Every table of the email gateway's database in one metadata: the shared dispatch tables and
the gateway's own, including those defined beside the code that uses them (OAuth refresh
tokens, Graph delta links). Migrations and the schema drift test read this."""

from services.email_gateway.adapters import bounce_suppression, oauth_tokens
from services.email_gateway.adapters.graph import receiver as graph_receiver
from services.email_gateway.adapters.tables import metadata

TABLES_BESIDE_THEIR_CODE = (
    oauth_tokens.refresh_tokens,
    graph_receiver.graph_delta,
    bounce_suppression.soft_bounces,
)

__all__ = ["TABLES_BESIDE_THEIR_CODE", "metadata"]
