"""deploy/nats/tls.example.conf: its client `tls {}` block, added to standalone.conf with test
certificates, gives mutual TLS on top of the per-service users."""

from __future__ import annotations

import contextlib
import re
import ssl
from pathlib import Path

import nats
import nats.errors
import pytest

from shared.bus import subjects
from shared.runtime.nats_server import NatsServer, free_port
from tests.integration.deploy.nats_configs import DEPLOY_NATS, STANDALONE, dev_password, render
from tests.support.smtp import make_tls_files

TLS_EXAMPLE = DEPLOY_NATS / "tls.example.conf"


def client_tls_block(server_cert: Path, server_key: Path, client_ca: Path) -> str:
    """The example's top-level `tls { ... }` block with the test's files."""
    match = re.search(r"^tls \{\n.*?^\}\n", TLS_EXAMPLE.read_text(), flags=re.S | re.M)
    assert match is not None, "tls.example.conf has a client tls block"
    block = match.group(0)
    for key, path in (("cert_file", server_cert), ("key_file", server_key), ("ca_file", client_ca)):
        block, found = re.subn(rf'{key}: "[^"]+"', f'{key}: "{path}"', block)
        assert found == 1, key
    assert re.search(r"^\s*verify: true", block, flags=re.M), "the example asks for mutual TLS"
    return block


@contextlib.contextmanager
def tls_server(tmp: Path):
    server_files = make_tls_files(tmp / "server", "localhost")
    client_files = make_tls_files(tmp / "client", "sms-gateway-client")
    port, http_port = free_port(), free_port()
    conf = render(STANDALONE, tmp, client_port=port, http_port=http_port, store_dir=tmp / "js")
    conf.write_text(
        conf.read_text()
        + "\n"
        + client_tls_block(server_files.cert, server_files.key, client_files.cert)
    )
    server = NatsServer(port=port, store_dir=tmp / "js", config_file=conf, log_file=tmp / "log")
    server.start()
    try:
        yield server, server_files, client_files
    finally:
        server.stop()


def context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def test_mutual_tls_with_the_example_block(tmp_path: Path) -> None:
    with tls_server(tmp_path) as (server, server_files, client_files):
        url = f"tls://localhost:{server.port}"
        nc = await nats.connect(
            url,
            user="sms_gateway",
            password=dev_password("sms_gateway"),
            tls=context(server_files.ca, client_files.cert, client_files.key),
            allow_reconnect=False,
        )
        try:
            await nc.publish(subjects.dispatch("sms", "s-tls"), b"{}")
            await nc.flush()
            assert nc.is_connected
        finally:
            await nc.close()
        # Without a client certificate the handshake is refused.
        with pytest.raises((nats.errors.Error, OSError, ssl.SSLError)):
            await nats.connect(
                url,
                user="sms_gateway",
                password=dev_password("sms_gateway"),
                tls=context(server_files.ca),
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
            )
