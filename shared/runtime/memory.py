"""Process-wide memory settings, applied before a service starts any thread."""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameter number for the arena limit (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at `count` (0: leave glibc's default); True if applied.

    glibc gives threads their own arenas, up to eight per core. A service on SQLite runs one
    aiosqlite thread per pooled connection, and the pool opens and closes overflow connections
    under load: each new thread's memory lands in some arena, and what the arenas free stays
    mapped. Under a long load test the gateway's RSS grew with the free space of the arenas,
    not with what it used. Elsewhere than glibc (musl, macOS) nothing happens.
    """
    if count <= 0:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))
