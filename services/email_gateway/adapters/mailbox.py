"""Where a site's mailbox is: its IMAP endpoint, with the password opened (or, with OAuth
sign-in, a token fetched) for this replica."""

from __future__ import annotations

from services.email_gateway.adapters.imap import ImapEndpoint, imap_account_id
from shared.email_auth.credentials import open_credentials
from shared.email_auth.login import OAuthLogin
from shared.email_auth.provider import TokenProvider
from shared.secrets import SecretBox
from shared.sites import Site


def imap_endpoint(
    site: Site, box: SecretBox, tokens: TokenProvider | None = None
) -> ImapEndpoint | None:
    """The site's IMAP account, or None when none is configured. With OAuth sign-in (issue
    19) it signs in with a token from `tokens` (without `tokens`: for its id only)."""
    imap = site.settings.email.imap
    email = site.settings.email
    if email.sign_in.is_oauth and imap.host:
        user = imap.username or email.sign_in.user or email.address
        if not user:
            return None
        account = imap_account_id(imap, site.group_id)
        oauth = None
        if tokens is not None:
            creds = open_credentials(account, email.sign_in, user, box)
            oauth = OAuthLogin(creds, tokens)
        return ImapEndpoint(
            account=account,
            host=imap.host,
            port=imap.port,
            security=imap.security,
            username=user,
            password="",
            oauth=oauth,
        )
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
