"""C allocator settings for a long-running gateway process (glibc only; elsewhere nothing).

Python hands every block over 512 bytes to the C library's ``malloc``. Two of glibc's defaults
make a gateway's resident memory climb in steps for hundreds of broadcasts, though the Python
heap stays flat:

- Each thread that allocates may get an arena of its own, up to eight per core, and an arena
  keeps the pages it once used. The gateway runs a dozen and more threads (one per database
  connection, the thread pools), so memory freed in one arena is not reused by another.
- A block of 128 KiB or more is mapped on its own and returned to the system when freed, but
  freeing one raises that threshold to the block's size. A broadcast's commands carry short
  audio inline (about 140 KiB of JSON for a 10 s message, one command per village, several
  copies of each while a batch is in flight), so after the first broadcast they all come from
  the arenas, which keep the fragmented pages.

``tune_allocator`` caps the arenas at two and fixes the threshold at 64 KiB before the gateway
starts its threads: those payloads are mapped and returned one by one. An operator who sets
``MALLOC_ARENA_MAX`` or ``MALLOC_MMAP_THRESHOLD_`` keeps their value.

What stays is smaller: an arena returns pages to the system only from its top, so pages freed
below a block still in use stay resident. Over a Jinju soak the memory in use stayed within 2 MiB
after 90 broadcasts (about 55 MiB from malloc, SQLite's included) while the arenas' free holes grew
from 4 to 10 MiB by broadcast 345; one ``malloc_trim`` then gave 6 MiB back. ``HeapTrimmer``
asks glibc for that every minute, so an idle gateway does not keep what a busy hour left.
Over 600 Jinju broadcasts after a warm-up the memory in use then stays flat, and the arenas' free
space grows by about 2 MiB, slowing (a shorter interval made no measurable difference).

``MemoryReader`` reads what an operator needs to tell a leak from a cache filling or a
fragmented heap, without a debugger: glibc's own count of the C heap in use and held free
(``mallinfo2``, every arena and the mapped blocks), and SQLite's count of the memory it holds
(its page and statement caches, every connection of the process). ``/metrics`` shows them.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import platform
from dataclasses import dataclass
from typing import Any, Final

# mallopt parameters, from glibc's malloc.h.
M_MMAP_THRESHOLD: Final = -3
M_ARENA_MAX: Final = -8

ARENA_MAX: Final = 2
MMAP_THRESHOLD: Final = 64 * 1024
TRIM_INTERVAL_S: Final = 60.0

# Each setting and the environment variable through which glibc lets an operator choose it.
_SETTINGS: Final = (
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
)


def tune_allocator() -> dict[str, int]:
    """Call once, first thing, in a process that serves the gateway. Returns what was set."""
    if platform.libc_ver()[0] != "glibc":
        return {}
    name = ctypes.util.find_library("c")
    if name is None:
        return {}
    libc = ctypes.CDLL(name)
    applied: dict[str, int] = {}
    for variable, parameter, value in _SETTINGS:
        if variable in os.environ:
            continue
        if libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) == 1:
            applied[variable] = value
    return applied


def _glibc() -> ctypes.CDLL | None:
    """The C library the process runs on, when it is glibc (whose malloc_trim is not POSIX)."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None
    if not version or not version.startswith("glibc"):
        return None
    return ctypes.CDLL(None)  # the process's own symbols, libc's among them


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes from the system in the arenas (not the mapped blocks)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mapped blocks
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use in the arenas
            "fordblks",  # bytes free in the arenas
            "keepcost",
        )
    ]


@dataclass(frozen=True, slots=True)
class MemoryFigures:
    """Bytes, or None where this process cannot tell."""

    c_heap_in_use: int | None = None  # malloc'd and not freed: arenas and mapped blocks
    c_heap_free: int | None = None  # freed but held by the arenas (fragmentation, top pad)
    sqlite: int | None = None  # what SQLite holds: page caches, statements, schemas


def _sqlite_library() -> ctypes.CDLL | None:
    """The SQLite library Python's sqlite3 module runs on (its symbols through the module)."""
    try:
        import _sqlite3

        library = ctypes.CDLL(_sqlite3.__file__)
        library.sqlite3_memory_used.restype = ctypes.c_int64
    except (ImportError, OSError, AttributeError):
        return None
    return library


class MemoryReader:
    """Reads `MemoryFigures` (cheap enough for every scrape: mallinfo2 walks the arenas once)."""

    def __init__(self) -> None:
        self._libc = _glibc()
        self._mallinfo2: Any = getattr(self._libc, "mallinfo2", None)
        if self._mallinfo2 is not None:
            self._mallinfo2.restype = _MallInfo2
        self._sqlite = _sqlite_library()

    def read(self) -> MemoryFigures:
        in_use = free = None
        if self._mallinfo2 is not None:
            info = self._mallinfo2()
            in_use, free = info.uordblks + info.hblkhd, info.fordblks
        sqlite = int(self._sqlite.sqlite3_memory_used()) if self._sqlite is not None else None
        return MemoryFigures(c_heap_in_use=in_use, c_heap_free=free, sqlite=sqlite)


class HeapTrimmer:
    """Gives the pages malloc holds free back to the system, now and then (glibc only)."""

    def __init__(self) -> None:
        self._libc = _glibc()

    @property
    def available(self) -> bool:
        return self._libc is not None

    def trim(self) -> bool:
        """True when some memory went back to the system."""
        if self._libc is None:
            return False
        return bool(self._libc.malloc_trim(ctypes.c_size_t(0)))

    async def run(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            # Walks every arena holding its lock: off the event loop.
            await asyncio.to_thread(self.trim)
