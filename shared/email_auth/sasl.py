"""The SASL initial responses for OAuth 2.0 bearer tokens (pure).

XOAUTH2 is Google's and Microsoft's documented format; OAUTHBEARER is RFC 7628. aiosmtplib
sends XOAUTH2 itself (`SMTP.auth_xoauth2`), so SMTP uses that; it has no OAUTHBEARER, and
imaplib's `authenticate` takes any mechanism with a callback that answers the challenge, so
those responses are made here.
"""

from __future__ import annotations

import base64

MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
"""In order of preference: XOAUTH2 (what Microsoft 365 and Gmail document, and what aiosmtplib
implements), else the standard OAUTHBEARER."""


def xoauth2(user: str, token: str) -> bytes:
    """`user=…^Aauth=Bearer …^A^A`, unencoded."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str, host: str, port: int) -> bytes:
    """RFC 7628 client response (gs2 header naming the user), unencoded."""
    user = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


def initial_response(mechanism: str, user: str, token: str, host: str, port: int) -> bytes:
    """The unencoded response for XOAUTH2 or OAUTHBEARER."""
    if mechanism.upper() == "OAUTHBEARER":
        return oauthbearer(user, token, host, port)
    if mechanism.upper() == "XOAUTH2":
        return xoauth2(user, token)
    raise ValueError(f"not an OAuth mechanism: {mechanism}")


def encoded(raw: bytes) -> str:
    """Base64, as both mechanisms send it on the wire."""
    return base64.b64encode(raw).decode("ascii")


def choose(offered: set[str]) -> str | None:
    """The mechanism to use from what the server offers (upper-case names), or None."""
    for mechanism in MECHANISMS:
        if mechanism in offered:
            return mechanism
    return None
