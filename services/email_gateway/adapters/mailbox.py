"""Where a site's mailbox is: its IMAP endpoint, with the password opened for this replica."""

from __future__ import annotations

from services.email_gateway.adapters.imap import ImapEndpoint, imap_account_id
from shared.secrets import SecretBox
from shared.sites import Site


def imap_endpoint(site: Site, box: SecretBox) -> ImapEndpoint | None:
    """The site's IMAP account, or None when none is configured."""
    imap = site.settings.email.imap
    if not imap.host or not imap.username or not imap.password:
        return None
    return ImapEndpoint(
        account=imap_account_id(imap, site.group_id),
        host=imap.host,
        port=imap.port,
        security=imap.security,
        username=imap.username,
        password=box.open(imap.password),
    )
