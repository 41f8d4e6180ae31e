"""Signing in to SMTP (aiosmtplib) and IMAP (imaplib) with a bearer token.

A server that refuses a cached token gets one more try with a freshly granted token (the
cached one may have been revoked early); a refusal of the fresh token is `SignInRefused`, which
holds the account like a refused grant: only a change of settings or consent fixes it.
"""

from __future__ import annotations

import imaplib
from collections.abc import Callable
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import SMTPAuthenticationError

from shared.email_auth import sasl
from shared.email_auth.credentials import OAuthCredentials
from shared.email_auth.provider import AccessToken, TokenProvider, TokenRefused


class SignInRefused(TokenRefused):
    """The mail server refused a freshly granted token (missing permission or mailbox
    access): the account is held, as for a refused grant."""


@dataclass(frozen=True)
class OAuthLogin:
    """What an SMTP or IMAP connection needs to sign in with OAuth 2.0."""

    credentials: OAuthCredentials
    provider: TokenProvider

    @property
    def fingerprint(self) -> str:
        return self.credentials.fingerprint

    async def token(self, fresh: bool = False) -> AccessToken:
        """A token for this account (cached unless `fresh`)."""
        return await self.provider.token(self.credentials, fresh=fresh)


async def smtp_sign_in(smtp: aiosmtplib.SMTP, login: OAuthLogin, host: str, port: int) -> str:
    """Authenticate an open (EHLO'd, secured) SMTP connection; returns the mechanism used.

    Raises TokenRefused/SignInRefused (hold), TokenUnavailable (retry), or aiosmtplib errors.
    """
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()  # the AUTH mechanisms are in the EHLO answer
    offered = {m.upper() for m in smtp.server_auth_methods}
    mechanism = sasl.choose(offered)
    if mechanism is None:
        raise SignInRefused(
            f"{host} does not offer OAuth sign-in (XOAUTH2 or OAUTHBEARER); it offers "
            f"{', '.join(sorted(offered)) or 'no AUTH at all'}"
        )
    user = login.credentials.user
    for fresh in (False, True):
        token = await login.token(fresh=fresh)
        try:
            if mechanism == "XOAUTH2":
                await smtp.auth_xoauth2(user, token.value)
            else:
                await _smtp_oauthbearer(smtp, user, token.value, host, port)
            return mechanism
        except SMTPAuthenticationError as exc:
            if fresh:
                raise SignInRefused(
                    f"{host} refused the token ({exc.code} {_status(exc.message)})"
                ) from exc
    raise AssertionError("unreachable")


def _status(message: str) -> str:
    """The enhanced status code of a reply (its text is the remote side's words)."""
    first = message.split(" ", 1)[0] if message else ""
    return first if first[:1].isdigit() else ""


async def _smtp_oauthbearer(
    smtp: aiosmtplib.SMTP, user: str, token: str, host: str, port: int
) -> None:
    raw = sasl.oauthbearer(user, token, host, port)
    response = await smtp.execute_command(b"AUTH", b"OAUTHBEARER", sasl.encoded(raw).encode())
    if response.code == 334:
        # RFC 7628 §3.2.3: the error challenge is answered with ^A to get the final reply.
        response = await smtp.execute_command(b"AQ==")
    if response.code != 235:
        raise SMTPAuthenticationError(response.code, response.message)


def imap_authenticator(
    mechanism: str, user: str, token: str, host: str, port: int
) -> Callable[[bytes], bytes | None]:
    """imaplib's `authenticate` callback: the initial response, then ^A after an error
    challenge (so the server ends the exchange with NO)."""
    sent = False

    def answer(challenge: bytes) -> bytes:
        nonlocal sent
        if not sent:
            sent = True
            return sasl.initial_response(mechanism, user, token, host, port)
        return b"\x01"

    return answer


def imap_sign_in(conn: imaplib.IMAP4, user: str, token: str, host: str, port: int) -> str:
    """AUTHENTICATE an imaplib connection with the best offered OAuth mechanism; returns it.

    Raises imaplib.IMAP4.error when refused, SignInRefused when nothing OAuth is offered.
    """
    offered = {
        c.upper().removeprefix("AUTH=") for c in conn.capabilities if c.upper().startswith("AUTH=")
    }
    mechanism = sasl.choose(offered)
    if mechanism is None:
        raise SignInRefused(f"{host} does not offer OAuth sign-in (XOAUTH2 or OAUTHBEARER)")
    conn.authenticate(mechanism, imap_authenticator(mechanism, user, token, host, port))
    return mechanism
