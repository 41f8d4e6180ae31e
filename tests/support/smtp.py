"""Real SMTP servers for tests: the project's SMTP sink (aiosmtpd) in a thread or a process.

`smtp_servers` starts sinks on free ports with any of the sink's options (AUTH, STARTTLS,
implicit TLS, refused recipients, a Sent-folder copy in dovecot, a reply delay) and a script of
faults per stage; every accepted message is kept with its arrival time. `tls_files` makes a
self-signed certificate for 127.0.0.1/localhost that the gateway trusts through
`STAGGER_EMAIL_GATEWAY_CA_FILE`.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.smtp_sink.composition import build_server
from services.smtp_sink.config import SinkConfig as SinkSettings
from services.smtp_sink.domain.received import Received
from services.smtp_sink.entrypoints.smtp import SinkServer
from services.smtp_sink.handlers.sink import Script
from shared.runtime.nats_server import free_port, port_open
from tests.support.processes import ROOT


@dataclass(frozen=True)
class TlsFiles:
    """A certificate, its key, and the CA file that makes clients trust it (itself)."""

    cert: Path
    key: Path

    @property
    def ca(self) -> Path:
        return self.cert


def make_tls_files(directory: Path, name: str = "localhost") -> TlsFiles:
    """A self-signed certificate valid for localhost and 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsFiles(cert_path, key_path)


class SmtpServer:
    """A running sink and what it accepted."""

    def __init__(self, server: SinkServer) -> None:
        self.server = server

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def received(self) -> list[Received]:
        return list(self.server.handler.received)

    def message_ids(self) -> Counter[str]:
        return Counter(r.message_id or "" for r in self.received)

    def parsed(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(r.data or b"", policy=email.policy.default)  # type: ignore[misc]
            for r in self.received
        ]

    def set_script(self, script: Script | None) -> None:
        self.server.handler.script = script


@pytest.fixture
def smtp_servers(tmp_path: Path) -> Iterator[Any]:
    """Start sinks in threads: `smtp_servers(**sink_settings, script=…)` → SmtpServer."""
    started: list[SinkServer] = []

    def start(script: Script | None = None, keep_files: bool = False, **options: Any) -> SmtpServer:
        settings = SinkSettings(port=free_port(), **options)
        directory = tmp_path / f"sink-{settings.port}" if keep_files else None
        server = build_server(settings, directory, keep_data=True, script=script)
        server.start_in_thread()
        started.append(server)
        return SmtpServer(server)

    yield start
    for server in started:
        server.stop_thread()


@dataclass
class SinkProcess:
    """The sink as a real process (`python -m services.smtp_sink`), for stack and crash tests."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    def journal(self) -> list[dict[str, Any]]:
        path = self.directory / "received.jsonl"
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def message_ids(self) -> Counter[str]:
        return Counter(r["message_id"] for r in self.journal())

    def messages(self) -> list[EmailMessage]:
        out = []
        for record in self.journal():
            raw = (self.directory / "maildir" / "new" / record["file"]).read_bytes()
            out.append(email.message_from_bytes(raw, policy=email.policy.default))
        return out  # type: ignore[return-value]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_sink_process(directory: Path, **env: str) -> SinkProcess:
    """Run the sink as its own process on a free port; waits until it listens."""
    port = int(env.pop("STAGGER_SMTP_SINK_PORT", free_port()))
    full = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_")}
    full.update(
        {
            "STAGGER_SMTP_SINK_PORT": str(port),
            "STAGGER_SMTP_SINK_DIR": str(directory),
            "STAGGER_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.smtp_sink"],
        cwd=ROOT,
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sink = SinkProcess(process, port, directory)
    deadline = dt.datetime.now() + dt.timedelta(seconds=30)
    while not port_open(port):
        if process.poll() is not None:
            raise RuntimeError(f"the SMTP sink exited with {process.returncode}")
        if dt.datetime.now() > deadline:
            sink.stop()
            raise RuntimeError("the SMTP sink did not listen within 30 s")
        time.sleep(0.05)
    return sink
