"""Opening an IMAP session with an OAuth 2.0 token (issue 19): a refused cached token is
retried once with a fresh one; a refused fresh token, or a refused grant, is `held` (polling
waits for corrected settings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.email_gateway.adapters.imap_errors import ImapFailure
from shared.email_auth.provider import TokenRefused, TokenUnavailable

if TYPE_CHECKING:
    from services.email_gateway.adapters.imap import ImapSession


async def _token(session: ImapSession, fresh: bool) -> str:
    oauth = session.endpoint.oauth
    assert oauth is not None
    try:
        return (await oauth.token(fresh=fresh)).value
    except TokenRefused as exc:
        raise ImapFailure("login", f"OAuth sign-in: {exc}", held=True) from exc
    except TokenUnavailable as exc:
        raise ImapFailure("login", f"OAuth sign-in: {exc}") from exc


async def connect_with_token(session: ImapSession) -> ImapSession:
    """Connect and sign in with the account's token."""
    try:
        return await session.connect_once(await _token(session, fresh=False))
    except ImapFailure as failure:
        if failure.stage != "login" or failure.held:
            raise
    try:
        return await session.connect_once(await _token(session, fresh=True))
    except ImapFailure as failure:
        if failure.stage != "login":
            raise
        raise ImapFailure("login", f"{failure}: the token was refused", held=True) from failure
