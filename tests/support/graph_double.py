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
    inbox: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    page_size: int = 2
    calls: Counter[str] = field(default_factory=Counter)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.0"

    def deliver(self, mailbox: str, mime: bytes) -> str:
        """A message arriving in the inbox (as Exchange would file it); returns its id."""
        parsed = email.message_from_bytes(mime, policy=email.policy.default)
        with self.lock:
            items = self.inbox.setdefault(mailbox, [])
            item = {
                "id": f"AAMk{uuid.uuid4().hex}",
                "seq": len(items) + 1,
                "internetMessageId": str(parsed["Message-ID"] or ""),
                "receivedDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "mime": mime,
            }
            items.append(item)
        return str(item["id"])

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

    def _delta(self, mailbox: str, query: dict[str, str]) -> None:
        state = self.server.state
        base = f"{state.url}/users/{urllib.parse.quote(mailbox)}/mailFolders/inbox/messages/delta"
        with state.lock:
            items = list(state.inbox.get(mailbox, []))
            state.calls["delta" if "$deltatoken" in query else "delta-initial"] += 1
        after = int(query.get("$deltatoken") or query.get("after") or 0)
        skip = int(query.get("$skiptoken") or 0)
        fresh = [i for i in items if i["seq"] > after]
        page = fresh[skip : skip + state.page_size]
        body: dict[str, Any] = {
            "value": [
                {k: i[k] for k in ("id", "receivedDateTime", "internetMessageId")} for i in page
            ]
        }
        if skip + state.page_size < len(fresh):
            params = {"after": str(after), "$skiptoken": str(skip + state.page_size)}
            body["@odata.nextLink"] = f"{base}?{urllib.parse.urlencode(params)}"
        else:
            top = max([after, *(i["seq"] for i in fresh)])
            body["@odata.deltaLink"] = f"{base}?{urllib.parse.urlencode({'$deltatoken': top})}"
        self._answer(200, body)

    def _value(self, mailbox: str, message: str) -> None:
        state = self.server.state
        with state.lock:
            state.calls["value"] += 1
            found = [i for i in state.inbox.get(mailbox, []) if i["id"] == message]
        if not found:
            self._answer(404, _error("ErrorItemNotFound", "The specified object was not found."))
            return
        data = found[0]["mime"]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.server.state
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        delta = self._mailbox(split.path, "/mailFolders/inbox/messages/delta")
        if delta is not None:
            if self._authorised(delta):
                self._delta(delta, query)
            return
        if split.path.endswith("/$value") and "/messages/" in split.path:
            head, _, tail = split.path.removesuffix("/$value").rpartition("/messages/")
            owner = self._mailbox(head + "/x", "/x")
            if owner is not None and self._authorised(owner):
                self._value(owner, urllib.parse.unquote(tail))
            return
        mailbox = self._mailbox(split.path, "/mailFolders/SentItems/messages")
        if mailbox is None:
            self._answer(404, _error("ResourceNotFound", "Resource not found"))
            return
        if not self._authorised(mailbox):
            return
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
