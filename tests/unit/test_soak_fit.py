"""The soak's growth figure: a least-squares slope over the samples, per 1,000 broadcasts."""

from __future__ import annotations

from bench.smaps import resident_by_kind
from bench.soak import profile_growth, slope_per_1000


def test_a_steady_leak_and_a_flat_line() -> None:
    leak = [(n, 200 + 0.01 * n) for n in range(60, 240, 3)]
    assert slope_per_1000(leak) == 10.0
    flat = [(n, 230.0 + (0.5 if n % 2 else -0.5)) for n in range(60, 240, 3)]
    assert abs(slope_per_1000(flat) or 0) < 1
    assert slope_per_1000([(60, 200.0)]) is None


SMAPS = """\
560681afb000-560681afc000 r--p 00000000 fe:00 26723      /usr/bin/python3.11
Rss:                   4 kB
560682000000-560682400000 rw-p 00000000 00:00 0          [heap]
Rss:                2048 kB
7f2a4c000000-7f2a4d000000 rw-p 00000000 00:00 0
Rss:                3072 kB
7f2a4d000000-7f2a50000000 ---p 00000000 00:00 0
Rss:                   0 kB
7f2a51100000-7f2a51300000 rw-p 00000000 00:00 0
Rss:                1024 kB
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0          [stack]
Rss:                 132 kB
"""


def test_resident_memory_by_kind_of_mapping() -> None:
    assert resident_by_kind(SMAPS) == {
        "brk_heap": 2.0,
        "arena_heaps": 3.0,  # starts at a 64 MiB boundary: a thread arena's heap
        "anon_other": 1.0,
        "file": 0.0,  # 4 KiB
    }


def test_each_kind_grows_by_its_own_slope() -> None:
    samples = [
        (n, {"brk_heap": 40.0, "arena_heaps": 10 + 0.005 * n, "anon_other": 80.0, "file": 1.0})
        for n in range(90, 390, 3)
    ]
    growth = profile_growth(samples)
    assert growth["arena_heaps"] == {
        "mib_first": 10.45,
        "mib_last": 11.935,
        "growth_mib_per_1000": 5.0,
    }
    assert growth["brk_heap"]["growth_mib_per_1000"] == 0.0
    assert profile_growth([]) == {}
