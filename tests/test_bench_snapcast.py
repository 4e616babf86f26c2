"""How the Snapcast peer's clicks are found in what its player wrote, and timed."""

from __future__ import annotations

from bench.snapcast import (
    PLAYER_BLOCK_MS,
    RATE,
    SAMPLE_BYTES,
    Setting,
    block_times,
    click_block,
    find_clicks,
    latencies,
    lowest_lossless,
)

BLOCK_SAMPLES = RATE * PLAYER_BLOCK_MS // 1000
BLOCK_BYTES = BLOCK_SAMPLES * SAMPLE_BYTES


def _silence(samples: int) -> bytes:
    return bytes(samples * SAMPLE_BYTES)


def test_clicks_are_found_by_number_where_they_start() -> None:
    pcm = _silence(1000) + click_block(0) + _silence(3000) + click_block(7) + _silence(10)
    click_samples = len(click_block(0)) // SAMPLE_BYTES
    assert find_clicks(pcm) == {0: 1000, 7: 1000 + click_samples + 3000}


def test_a_click_cut_short_is_not_taken_for_one() -> None:
    whole = click_block(3)
    cut = whole[:20] + _silence(100)  # its burst, but not its number
    assert find_clicks(_silence(50) + cut + _silence(200)) == {}


def test_a_late_read_does_not_make_a_block_late() -> None:
    # A block every 50 ms from 1 ms on; the reader slept through blocks 1-7 and took them at
    # 400 ms, then took block 8 as soon as it was written.
    reads = [(0.001, BLOCK_BYTES), (0.400, 8 * BLOCK_BYTES), (0.401, 9 * BLOCK_BYTES)]
    times = block_times(reads, BLOCK_BYTES)
    assert [round(t, 3) for t in times] == [round(0.001 + 0.05 * b, 3) for b in range(9)]


def test_latency_runs_from_the_pipe_to_the_clicks_place_in_its_block() -> None:
    offset = 160  # 10 ms into the player's third block
    pcm = _silence(2 * BLOCK_SAMPLES + offset) + click_block(0)
    pcm += _silence(3 * BLOCK_SAMPLES - len(pcm) // SAMPLE_BYTES)
    reads = [(10.0 + i * 0.05, (i + 1) * BLOCK_BYTES) for i in range(3)]
    found = latencies(pcm, reads, {0: 9.9, 1: 9.95})
    assert len(found) == 1  # click 1 never came out
    assert round(found[0], 3) == round((10.1 + 0.010 - 9.9) * 1000, 3)


def test_the_peer_is_named_at_its_lowest_buffer_that_lost_nothing() -> None:
    settings = [
        Setting(1000, 4, [990.0] * 4),
        Setting(200, 4, [180.0] * 4),
        Setting(100, 4, [90.0] * 3),
        Setting(50, 4, []),
    ]
    best = lowest_lossless(settings)
    assert best is not None
    assert best.buffer_ms == 200
    assert settings[2].entry()["lost"] == 1
    assert settings[3].entry()["p50_ms"] is None
