"""Mouth to horn on a speaker: the frames' capture lag, the slot, the clock offset, the report."""

from __future__ import annotations

from devices.live import LivePlayer
from tests.devices.commands import audio, command
from wire import contract
from wire.contract import EndReason, LiveFrame, LiveKind

SESSION = "cd" * 16
CLIP = b"OggS" + bytes(range(256)) * 4
JITTER_MS = 60


def _stream() -> contract.LiveStream:
    return contract.LiveStream(
        session=SESSION, key=contract.new_live_key(), jitter_ms=JITTER_MS, stall_ms=1000
    )


def _frame(
    stream: contract.LiveStream, seq: int, *, at_ms: int, lag_ms: int | None, start: bool = False
) -> bytes:
    flags = (contract.LIVE_START_FLAG if start else 0) | contract.lag_flags(lag_ms)
    frame = LiveFrame(LiveKind.AUDIO, flags, stream.session, seq, at_ms, b"\x78" + bytes(40))
    return contract.encode_live_frame(frame, stream.key_bytes())


def _end(stream: contract.LiveStream, last: int) -> bytes:
    frame = LiveFrame(LiveKind.END, int(EndReason.STOPPED), stream.session, last, 0)
    return contract.encode_live_frame(frame, stream.key_bytes())


def _talk(
    player: LivePlayer, lags: list[int | None], *, skip: frozenset[int] = frozenset()
) -> contract.Command:
    """Frames every 20 ms, arriving as the gateway stamps them (local clock = gateway clock +
    the test's offset is the caller's business), each `lags[seq]` after its capture."""
    stream = _stream()
    cmd = command(refs=(audio(CLIP),), live=stream)
    player.join(cmd, 0.0)
    for seq, lag in enumerate(lags):
        if seq in skip:
            continue
        at = 1000 + seq * 20
        player.on_frame(_frame(stream, seq, at_ms=at, lag_ms=lag, start=seq == 0), float(at))
    player.on_frame(_end(stream, len(lags) - 1), 1000.0 + len(lags) * 20)
    wake = player.wake_at_ms
    assert wake is not None
    assert [d.played for d in player.on_tick(wake)] == [True]
    return cmd


def test_each_frame_counts_from_its_capture_to_its_slot_and_the_report_has_p50_p95() -> None:
    # 100 frames: 90 captured 20 ms before the gateway had them, 10 captured 120 ms before.
    lags: list[int | None] = [20] * 90 + [120] * 10
    player = LivePlayer()
    cmd = _talk(player, lags)
    report = player.reports[cmd.id]
    # Each slot is the jitter target after its arrival, and arrival = the gateway's stamp.
    assert report.latency_ms == JITTER_MS
    assert report.mouth_p50_ms == 20 + JITTER_MS
    assert report.mouth_p95_ms == 120 + JITTER_MS
    assert (report.frames_received, report.frames_lost) == (100, 0)


def test_frames_lost_are_counted_and_the_output_lead_is_added() -> None:
    player = LivePlayer(output_lead_ms=100)
    cmd = _talk(player, [40] * 50, skip=frozenset({10, 11, 30}))
    report = player.reports[cmd.id]
    assert report.frames_lost == 3
    assert report.mouth_p50_ms == report.mouth_p95_ms == 40 + JITTER_MS + 100


def test_frames_without_a_capture_lag_play_and_the_figures_say_unknown() -> None:
    player = LivePlayer()
    cmd = _talk(player, [None] * 20)
    report = player.reports[cmd.id]
    assert (report.frames_received, report.frames_lost) == (20, 0)
    assert report.latency_ms == JITTER_MS
    assert (report.mouth_p50_ms, report.mouth_p95_ms) == (None, None)


def test_a_clock_far_from_the_gateways_is_corrected_by_its_offset_a_close_one_is_not() -> None:
    # The speaker's clock runs 2 s ahead: frames arrive at gateway time + 2000 on it.
    ahead = LivePlayer(offset_ms=lambda: 2000)
    stream = _stream()
    cmd = command(refs=(audio(CLIP),), live=stream)
    ahead.join(cmd, 2000.0)
    for seq in range(10):
        at = 1000 + seq * 20
        ahead.on_frame(_frame(stream, seq, at_ms=at, lag_ms=30, start=seq == 0), float(at + 2000))
    ahead.on_frame(_end(stream, 9), 3200.0)
    wake = ahead.wake_at_ms
    assert wake is not None
    ahead.on_tick(wake)
    assert ahead.reports[cmd.id].mouth_p95_ms == 30 + JITTER_MS

    # Within NTP's reach (here 20 ms) the clock is trusted as it is: nothing is subtracted.
    close = LivePlayer(offset_ms=lambda: 20)
    cmd = _talk(close, [30] * 10)
    assert close.reports[cmd.id].mouth_p95_ms == 30 + JITTER_MS


def test_the_capture_lag_rides_in_the_flags_beside_the_spurt_bit() -> None:
    for lag, said in ((None, None), (-40, 0), (0, 0), (23, 25), (630, 630), (5000, 630)):
        flags = contract.LIVE_START_FLAG | contract.lag_flags(lag)
        frame = LiveFrame(LiveKind.AUDIO, flags, SESSION, 0, 10_000)
        assert frame.starts_spurt
        assert frame.captured_ms == (None if said is None else 10_000 - said), lag
    # Control frames' flags are their reason, never a lag.
    assert LiveFrame(LiveKind.END, 2, SESSION, 0, 10_000).captured_ms is None
