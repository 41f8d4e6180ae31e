"""A stand-in for Microsoft Graph's mail API on 127.0.0.1 (issue 19), following its published
shapes: `POST /v1.0/users/{id}/sendMail` (MIME, base64, `text/plain`) answering `202`, Sent
Items listed with `$filter=internetMessageId eq '…'`. Bearer tokens are checked against the
test authorization server (JWKS signature, then introspection), as Graph checks Entra's.

Faults, consumed one per sendMail call: `429` (with `Retry-After`), `503`, and
`accept_then_timeout` (the message is filed in Sent Items, the answer comes too late).
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.oauth_server import AuthServer
from tests.support.oauth_smtp import TokenVerifier


@dataclass
class GraphState:
    """What the stand-in holds; tests script faults and read what was sent."""

    verifier: TokenVerifier
    faults: list[str] = field(default_factory=list)
    hang_seconds: float = 3.0
    retry_after: int = 1
    sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.0"

    def message_ids(self, mailbox: str) -> Counter[str]:
        with self.lock:
            return Counter(m["internetMessageId"] for m in self.sent.get(mailbox, []))


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any] | None, **headers: str) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _mailbox(self, path: str, suffix: str) -> str | None:
        prefix = "/v1.0/users/"
        if not path.startswith(prefix) or not path.endswith(suffix):
            return None
        return urllib.parse.unquote(path[len(prefix) : -len(suffix)])

    def _authorised(self, mailbox: str) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        why = self.server.state.verifier.check(mailbox, token)
        if why is None:
            return True
        self._answer(401, _error("InvalidAuthenticationToken", why))
        return False

    def do_POST(self) -> None:
        state = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        mailbox = self._mailbox(path, "/sendMail")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if mailbox is None:
            self._answer(404, _error("ResourceNotFound", "Resource not found"))
            return
        if not self._authorised(mailbox):
            return
        with state.lock:
            fault = state.faults.pop(0) if state.faults else None
            state.calls[fault or "ok"] += 1
        if fault == "429":
            self._answer(
                429,
                _error("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
                Retry_After=str(state.retry_after),
            )
            return
        if fault == "503":
            self._answer(503, _error("ServiceUnavailable", "Service Unavailable"))
            return
        if self.headers.get("Content-Type", "").split(";")[0] != "text/plain":
            self._answer(400, _error("ErrorMimeContentInvalid", "expected base64 MIME"))
            return
        try:
            mime = base64.b64decode(body, validate=True)
        except ValueError:
            self._answer(400, _error("ErrorMimeContentInvalidBase64String", "Invalid base64"))
            return
        parsed = email.message_from_bytes(mime, policy=email.policy.default)
        record = {
            "id": uuid.uuid4().hex,
            "internetMessageId": str(parsed["Message-ID"] or ""),
            "subject": str(parsed["Subject"] or ""),
        }
        with state.lock:
            state.sent.setdefault(mailbox, []).append(record)
        if fault == "accept_then_timeout":
            time.sleep(state.hang_seconds)  # filed in Sent Items; the answer comes too late
        self._answer(202, None)

    def do_GET(self) -> None:
        state = self.server.state
        split = urllib.parse.urlsplit(self.path)
        mailbox = self._mailbox(split.path, "/mailFolders/SentItems/messages")
        if mailbox is None:
            self._answer(404, _error("ResourceNotFound", "Resource not found"))
            return
        if not self._authorised(mailbox):
            return
        query = dict(urllib.parse.parse_qsl(split.query))
        wanted = None
        flt = query.get("$filter", "")
        if flt.startswith("internetMessageId eq '") and flt.endswith("'"):
            wanted = flt[len("internetMessageId eq '") : -1].replace("''", "'")
        with state.lock:
            state.calls["search"] += 1
            found = [
                m
                for m in state.sent.get(mailbox, [])
                if wanted is None or m["internetMessageId"] == wanted
            ]
        self._answer(200, {"value": found})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: GraphState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@pytest.fixture
def graph_double(auth_server: AuthServer) -> Iterator[GraphState]:
    """A running Graph stand-in trusting the test authorization server."""
    state = GraphState(TokenVerifier(auth_server.jwks_url, auth_server.introspection_url))
    server = _Server(state)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="graph-double", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
