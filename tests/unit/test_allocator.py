"""The allocator settings: large transient blocks go back to the system once freed, and the
trimmer gives back the pages freed between blocks still in use."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.allocator import HeapTrimmer, tune_allocator

# Blocks the size of a command carrying its audio inline, freed between blocks that stay (as
# the rows, messages and strings a gateway keeps between broadcasts do): without the fixed
# threshold they would be holes in the heap, resident until the heap's top is freed.
CHURN = textwrap.dedent(
    """
    import json, sys
    from gateway.allocator import tune_allocator

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    applied = tune_allocator() if sys.argv[1] == "tuned" else {}
    kept = []
    before = rss_kib()
    for _ in range(3):
        payloads = []
        for i in range(300):
            payloads.append(b"x" * (140 * 1024 + i))
            kept.append(bytes(2048))
        del payloads
    print(json.dumps({"applied": applied, "grown_kib": rss_kib() - before}))
    """
)


def _churn(mode: str) -> dict[str, object]:
    found = subprocess.run(
        [sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(found.stdout)
    return result


def test_freed_payloads_leave_the_process() -> None:
    tuned = _churn("tuned")
    assert tuned["applied"] == {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 64 * 1024}
    # 900 payloads of 140 KiB went through; what stays is the 2 KiB blocks kept (1.8 MiB).
    assert isinstance(tuned["grown_kib"], int)
    assert tuned["grown_kib"] < 8 * 1024


def test_an_operators_choice_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert tune_allocator() == {}


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_the_trimmer_gives_back_pages_freed_between_blocks_in_use() -> None:
    trimmer = HeapTrimmer()
    if not trimmer.available:  # not glibc: nothing to ask
        assert trimmer.trim() is False
        return
    # Blocks under the mmap threshold, every other one freed: 16 MiB of holes an arena keeps
    # (free() returns only the top of an arena).
    blocks = [b"x" * 8000 for _ in range(4096)]  # written: resident, unlike calloc's zeros
    del blocks[::2]
    before = _rss_kib()
    assert trimmer.trim() is True
    assert before - _rss_kib() > 4 * 1024  # a whole page of each 8 KiB hole at least
    assert len(blocks) == 2048


async def test_the_trimmer_trims_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    trimmer = HeapTrimmer()
    trims: list[int] = []
    enough = asyncio.Event()

    def trim() -> bool:
        trims.append(1)
        if len(trims) == 3:
            enough.set()
        return True

    monkeypatch.setattr(trimmer, "trim", trim)
    task = asyncio.create_task(trimmer.run(interval_s=0))
    await enough.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(trims) >= 3
