"""dovecot with an oauth2 passdb (issue 19): XOAUTH2 and OAUTHBEARER tokens are checked by
dovecot itself against the test authorization server's introspection endpoint (RFC 7662);
password logins (the tests' own deliveries) still use the passwd-file."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.imap import Dovecot, dovecot_binary
from tests.support.oauth_server import AuthServer
from tests.support.services import require


class OAuthDovecot(Dovecot):
    """A private dovecot whose second passdb validates bearer tokens."""

    introspection_url: str = ""

    def _config(self) -> str:
        base = super()._config()
        oauth = self.root / "oauth2.conf.ext"
        oauth.write_text(
            f"introspection_mode = post\n"
            f"introspection_url = {self.introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "force_introspection = yes\n"
        )
        base = base.replace(
            "auth_mechanisms = plain login", "auth_mechanisms = plain login xoauth2 oauthbearer"
        )
        return base.replace(
            "passdb {\n  driver = passwd-file\n",
            "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {oauth}\n}}\npassdb {{\n  driver = passwd-file\n"
            "  mechanisms = plain login\n",
        )


@pytest.fixture
def oauth_dovecot(auth_server: AuthServer) -> Iterator[OAuthDovecot]:
    """A dovecot for one test, validating tokens of that test's authorization server."""
    binary = dovecot_binary()
    require(binary is not None, "IMAP server (dovecot)", "dovecot is not installed")
    assert binary is not None
    root = Path(tempfile.mkdtemp(prefix="stagger-dovecot-oauth-"))
    server = OAuthDovecot(binary, root)
    server.introspection_url = auth_server.introspection_url
    try:
        server.start()
    except RuntimeError as exc:
        shutil.rmtree(root, ignore_errors=True)
        require(False, "IMAP server (dovecot)", str(exc))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
