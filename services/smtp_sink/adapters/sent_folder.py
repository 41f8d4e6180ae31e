"""The Sent folder the sink appends accepted mail to over IMAP, as Microsoft 365 and Gmail do."""

from __future__ import annotations

import contextlib
import imaplib
import threading
import urllib.parse


class SentFolder:
    """Appends accepted messages to an IMAP folder (blocking; called from a worker thread)."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("imap", "imaps") or not parsed.hostname:
            raise ValueError("sent_imap_url must look like imap://user:password@host:port/Folder")
        self.host = parsed.hostname
        self.port = parsed.port or (993 if parsed.scheme == "imaps" else 143)
        self.secure = parsed.scheme == "imaps"
        self.user = urllib.parse.unquote(parsed.username or "")
        self.password = urllib.parse.unquote(parsed.password or "")
        self.folder = urllib.parse.unquote(parsed.path.lstrip("/")) or "Sent"
        self._conn: imaplib.IMAP4 | None = None
        self._lock = threading.Lock()

    def _connect(self) -> imaplib.IMAP4:
        conn: imaplib.IMAP4 = (
            imaplib.IMAP4_SSL(self.host, self.port, timeout=30)
            if self.secure
            else imaplib.IMAP4(self.host, self.port, timeout=30)
        )
        conn.login(self.user, self.password)
        return conn

    def append(self, data: bytes) -> None:
        folder = '"' + self.folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
        with self._lock:
            for attempt in range(3):
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    typ, detail = self._conn.append(folder, None, None, data)
                    if typ == "OK":
                        return
                    if b"TRYCREATE" in b" ".join(d for d in detail if isinstance(d, bytes)):
                        self._conn.create(folder)
                        continue
                    raise RuntimeError(f"APPEND refused: {detail!r}")
                except (OSError, imaplib.IMAP4.error):
                    self.close_locked()
                    if attempt == 2:
                        raise

    def close_locked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.logout()
            self._conn = None
