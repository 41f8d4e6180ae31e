"""Child processes of the embedded stack, the tests and the benchmarks: start tied to the
parent, stop gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable


def die_with_this_process() -> Callable[[], None]:
    """A `preexec_fn` that has the kernel SIGTERM the child when this process dies (Linux).

    The signal follows the thread that started the child, so start children from a thread
    that lives as long as the process (the main thread). The child also checks that its
    parent is still the one that forked it: a parent killed between fork and the `prctl`
    call would otherwise leave it running with nobody to stop it.
    """
    parent = os.getpid()

    def preexec() -> None:
        # Until exec the child carries the parent's Python signal handlers, which would
        # swallow the death signal: take the default (terminate) before asking for it.
        if _terminate_on_parent_death() and os.getppid() != parent:
            os._exit(1)

    return preexec


def stop_with_parent() -> None:
    """Called first in a worker child (multiprocessing): it stops when its parent dies, and
    a Ctrl-C, which reaches the whole process group, leaves the stopping to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _terminate_on_parent_death()


def _terminate_on_parent_death() -> bool:
    """SIGTERM, with its default action (terminate), for this process when its parent dies;
    False where the kernel cannot be asked (not Linux)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False
    return True


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 20) -> int | None:
    """SIGTERM (the services drain in-flight work), then SIGKILL after `timeout` seconds;
    returns the exit code, or None if there was no process."""
    if process is None:
        return None
    if process.poll() is not None:
        return process.returncode
    process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)
