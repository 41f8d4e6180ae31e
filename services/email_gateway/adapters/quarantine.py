"""Where inbound attachments wait: content-addressed files nobody in Stagger opens.

Each attachment is stored once as `<dir>/<sha256 of its bytes>`, written to a temporary file,
flushed to disk, given mode 0600 and then renamed into place (atomic: a reader never sees half a
file, and two replicas storing the same bytes end with one identical file). The type is sniffed
from the first bytes while they are still in memory; nothing is executed, previewed, unpacked
or scanned. Staff get a file only after a release (an event); `read` serves released bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path

from shared.events.schemas.inbound_email import SniffedType

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sniff(data: bytes) -> SniffedType:
    """The file type from its magic bytes (the sender's Content-Type is not trusted)."""
    head = data[:8]
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"PK\x03\x04"):
        # An Office Open XML document is a zip whose members live under word/.
        return "docx" if b"word/" in data[:65536] else "zip"
    if head.startswith(b"MZ"):
        return "exe"
    return "unknown"


def sha256(data: bytes) -> str:
    """The content address of some bytes."""
    return hashlib.sha256(data).hexdigest()


class Quarantine:
    """A directory of content-addressed attachment files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def ensure(self) -> None:
        """Create the directory (mode 0700)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.directory, 0o700)

    def path(self, digest: str) -> Path:
        """Where the file with this digest is (or would be)."""
        if not _HEX64.match(digest):
            raise ValueError("not a sha256 digest")
        return self.directory / digest

    def store(self, data: bytes) -> str:
        """Keep the bytes (once); returns their sha256."""
        digest = sha256(data)
        final = self.path(digest)
        if final.exists():
            return digest
        self.ensure()
        tmp = self.directory / f".{digest}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return digest

    def has(self, digest: str) -> bool:
        """True if the file is stored."""
        return self.path(digest).exists()

    def read(self, digest: str) -> bytes:
        """The stored bytes (only ever served to staff after a release)."""
        return self.path(digest).read_bytes()
