"""The soak's growth figure: a least-squares slope over the samples, per 1,000 broadcasts."""

from __future__ import annotations

from bench.soak import slope_per_1000


def test_a_steady_leak_and_a_flat_line() -> None:
    leak = [(n, 200 + 0.01 * n) for n in range(60, 240, 3)]
    assert slope_per_1000(leak) == 10.0
    flat = [(n, 230.0 + (0.5 if n % 2 else -0.5)) for n in range(60, 240, 3)]
    assert abs(slope_per_1000(flat) or 0) < 1
    assert slope_per_1000([(60, 200.0)]) is None
