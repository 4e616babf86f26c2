"""Where a process's resident memory lies, by kind of mapping, from ``/proc/PID/smaps``.

Python objects of up to 512 bytes live in pymalloc's 1 MiB arenas, mapped on their own; anything
larger, and every C library's memory (SQLite's page and statement caches among them), comes from
glibc's ``malloc``: the main arena grows the ``[heap]`` mapping, other threads' arenas are heaps
of their own (reserved 64 MiB at a time, at a 64 MiB boundary), and blocks over the mmap threshold
are mapped one by one. The kernel merges neighbouring anonymous mappings, so pymalloc's arenas and
glibc's mapped blocks cannot be told apart from outside; what can:

- ``brk_heap``: glibc's main arena;
- ``arena_heaps``: glibc's other arenas;
- ``anon_other``: pymalloc's arenas, glibc's mapped blocks, thread stacks, other mappings;
- ``file``: shared libraries and any file mapped into memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

KINDS: Final = ("brk_heap", "arena_heaps", "anon_other", "file")
# glibc's HEAP_MAX_SIZE on 64-bit machines: a thread arena's heap starts at such a boundary.
ARENA_HEAP_SPAN: Final = 64 * 1024 * 1024
_MAPPING: Final = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$")


def _kind(start: int, end: int, name: str) -> str | None:
    if name == "[heap]":
        return "brk_heap"
    if name.startswith("/"):
        return "file"
    if name:
        return None  # [stack], [vdso] and the like: a few KiB that never move
    if start % ARENA_HEAP_SPAN == 0 and end - start <= ARENA_HEAP_SPAN:
        return "arena_heaps"
    return "anon_other"


def resident_by_kind(smaps: str) -> dict[str, float]:
    """Resident MiB of each kind of mapping in the text of a ``/proc/PID/smaps``."""
    kib = dict.fromkeys(KINDS, 0)
    kind: str | None = None
    for line in smaps.splitlines():
        mapping = _MAPPING.match(line)
        if mapping is not None:
            start, end = int(mapping[1], 16), int(mapping[2], 16)
            kind = _kind(start, end, mapping[3].strip())
        elif line.startswith("Rss:") and kind is not None:
            kib[kind] += int(line.split()[1])
    return {name: round(value / 1024, 1) for name, value in kib.items()}


def read_resident_by_kind(pid: int) -> dict[str, float]:
    return resident_by_kind(Path(f"/proc/{pid}/smaps").read_text())
