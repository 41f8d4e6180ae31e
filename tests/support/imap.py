"""A real IMAP server for tests: Debian's dovecot, started with its own configuration.

Never the system's instance: the fixture writes a temporary configuration (its own base, state
and mail directories, a passwd-file of test users, a free port on 127.0.0.1) and starts
`dovecot -F` as a child process, as root or not. Without dovecot a test that needs it calls
`require`: it skips on a laptop and fails under CI=true (`.ci/run` installs `dovecot-imapd`).
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.runtime.nats_server import free_port, port_open
from tests.support.services import require

CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def dovecot_binary() -> Path | None:
    """Where dovecot is installed, or None."""
    found = shutil.which("dovecot")
    if found:
        return Path(found)
    for candidate in CANDIDATES:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


@dataclass
class Dovecot:
    """One private dovecot instance and its test users."""

    binary: Path
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def _identities(self) -> tuple[str, str, str, int, int]:
        """(internal user, its group, login user, mail uid, mail gid)."""
        if os.geteuid() == 0:
            nobody = _user("nobody")
            internal = "dovecot" if _user("dovecot") else "nobody"
            login = "dovenull" if _user("dovenull") else "nobody"
            group = grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name
            uid, gid = (nobody.pw_uid, nobody.pw_gid) if nobody else (65534, 65534)
            return internal, group, login, uid, gid
        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(os.getegid()).gr_name
        return me.pw_name, group, me.pw_name, os.geteuid(), os.getegid()

    def _config(self) -> str:
        internal, group, login, uid, gid = self._identities()
        r = self.root
        chroot = "" if os.geteuid() == 0 else "  chroot =\n"
        return f"""
base_dir = {r}/run
state_dir = {r}/state
instance_name = stagger-test-{self.port}
log_path = {r}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:{r}/mail/%u
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/home/%u
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
{chroot}}}
"""

    def start(self, timeout: float = 20.0) -> Dovecot:
        """Write the configuration and start dovecot in the foreground (as our child)."""
        _, _, _, uid, gid = self._identities()
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            for sub in ("mail", "home"):
                os.chown(self.root / sub, uid, gid)
        (self.root / "passwd").write_text("")
        config = self.root / "dovecot.conf"
        config.write_text(self._config())
        self.process = subprocess.Popen(
            [str(self.binary), "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(
                    f"dovecot exited ({self.process.returncode}): {err}\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dovecot did not listen within {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop this instance (only the process this fixture started)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def add_user(self, user: str | None = None, password: str | None = None) -> tuple[str, str]:
        """A new mailbox account; returns (user, password)."""
        user = user or f"u{uuid.uuid4().hex[:10]}@example.test"
        password = password or uuid.uuid4().hex
        self.users[user] = password
        lines = "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items())
        path = self.root / "passwd"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(lines)
        # Dovecot re-reads the file when its modification time changes (whole seconds): give
        # each version a later one, then wait until the new user can log in.
        self._version = max(getattr(self, "_version", 0) + 1, int(time.time()) + 1)
        os.utime(tmp, (self._version, self._version))
        os.replace(tmp, path)
        deadline = time.monotonic() + 15
        while True:
            try:
                with self.client(user):
                    return user, password
            except imaplib.IMAP4.error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @contextlib.contextmanager
    def client(self, user: str) -> Iterator[imaplib.IMAP4]:
        """A logged-in imaplib client for a test user."""
        conn = imaplib.IMAP4(self.host, self.port, timeout=30)
        try:
            conn.login(user, self.users[user])
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    @staticmethod
    def _folder(name: str) -> str:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def create(self, user: str, folder: str) -> None:
        """Create a folder (no error if it exists)."""
        with self.client(user) as conn:
            conn.create(self._folder(folder))

    def append(self, user: str, folder: str, data: bytes) -> None:
        """Place a message in a folder, as a delivery (or a provider's Sent copy) would."""
        with self.client(user) as conn:
            typ, detail = conn.append(self._folder(folder), None, None, data)
            if typ != "OK":
                conn.create(self._folder(folder))
                typ, detail = conn.append(self._folder(folder), None, None, data)
            assert typ == "OK", detail

    def count(self, user: str, folder: str) -> int:
        """How many messages a folder holds."""
        with self.client(user) as conn:
            typ, data = conn.select(self._folder(folder), readonly=True)
            return int(data[0]) if typ == "OK" and data and data[0] else 0

    def sent_url(self, user: str, folder: str) -> str:
        """An `imap://` URL for the SMTP sink's Sent-folder copy."""
        quote = urllib.parse.quote
        return (
            f"imap://{quote(user, safe='')}:{quote(self.users[user], safe='')}"
            f"@{self.host}:{self.port}/{quote(folder, safe='')}"
        )


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A private dovecot for the session (skips, or fails under CI, when not installed)."""
    binary = dovecot_binary()
    require(binary is not None, "IMAP server (dovecot)", "dovecot is not installed")
    assert binary is not None
    root = Path(tempfile.mkdtemp(prefix="stagger-dovecot-"))
    server = Dovecot(binary, root)
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
