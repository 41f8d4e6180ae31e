"""Child processes of the embedded stack, the tests and the benchmarks: start tied to the
parent, stop gracefully."""

from __future__ import annotations

import signal
import subprocess


def die_with_parent() -> None:
    """`preexec_fn` for children: the kernel sends SIGTERM if the parent dies (Linux).

    The signal follows the thread that started the child, so start children from a thread
    that lives as long as the parent (the main thread).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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
