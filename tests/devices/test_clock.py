"""A speaker's clock offset from the gateway's, and when it starts what is due at a play-at."""

from __future__ import annotations

from devices.clock import CORRECTED_MS, MAX_WAIT_MS, ClockOffset


def test_the_offset_is_the_smallest_difference_seen() -> None:
    clock = ClockOffset(samples=4)
    assert clock.offset_ms is None
    for transit in (30, 7, 12):
        clock.observe(1000, 1000 + 200 + transit)  # the speaker's clock is 200 ms ahead
    assert clock.offset_ms == 207
    for _ in range(4):  # the fast sample leaves the window
        clock.observe(1000, 1000 + 200 + 20)
    assert clock.offset_ms == 220


def test_a_synchronised_clock_starts_at_the_play_at_time_on_its_own_clock() -> None:
    clock = ClockOffset()
    clock.observe(1000, 1000 + CORRECTED_MS - 10)  # NTP's clock, plus a slow network's delay
    assert clock.wait_ms(5000, 4700.0) == 300
    assert clock.wait_ms(None, 4700.0) == 0, "no play-at: at once"
    assert clock.wait_ms(4000, 4700.0) == 0, "already past: at once"
    assert clock.wait_ms(4700 + MAX_WAIT_MS + 1, 4700.0) == 0, "a clock gone wrong: at once"


def test_a_clock_off_by_more_is_corrected_through_its_offset() -> None:
    clock = ClockOffset()
    clock.observe(1000, 1000 - 400)  # 400 ms behind
    # Due at 5000 on the gateway's clock: 4600 on this one.
    assert clock.wait_ms(5000, 4300.0) == 300
