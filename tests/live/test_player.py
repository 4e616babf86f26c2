"""The speaker's live stream logic: frames checked, ordered, played in their slots, ended."""

from __future__ import annotations

from devices.live import JitterBuffer, LivePlayer, with_report
from tests.devices.commands import audio, command
from wire import contract
from wire.contract import EndReason, LiveFrame, LiveKind

SESSION = "ab" * 16
CLIP = b"OggS" + bytes(range(256)) * 4


def _stream(jitter_ms: int = 80) -> contract.LiveStream:
    return contract.LiveStream(
        session=SESSION, key=contract.new_live_key(), jitter_ms=jitter_ms, stall_ms=1000
    )


def _live_command(stream: contract.LiveStream) -> contract.Command:
    return command(refs=(audio(CLIP),), live=stream)


def _frame(
    stream: contract.LiveStream,
    seq: int,
    *,
    kind: LiveKind = LiveKind.AUDIO,
    flags: int = 0,
    at_ms: int = 0,
    key: bytes | None = None,
) -> bytes:
    payload = b"\x78" + bytes(40) if kind is LiveKind.AUDIO else b""
    frame = LiveFrame(kind, flags, stream.session, seq, at_ms, payload)
    return contract.encode_live_frame(frame, key or stream.key_bytes())


def test_frames_in_order_play_and_a_stop_ends_played_without_loss() -> None:
    stream = _stream()
    cmd = _live_command(stream)
    player = LivePlayer()
    assert player.join(cmd, 0.0) == []
    for seq in range(10):
        flags = contract.LIVE_START_FLAG if seq == 0 else 0
        assert player.on_frame(_frame(stream, seq, flags=flags, at_ms=seq * 20), seq * 20.0) == []
    done = player.on_frame(_frame(stream, 9, kind=LiveKind.END, flags=EndReason.STOPPED), 200.0)
    assert done == []  # the buffer still holds frames to play
    assert player.wake_at_ms is not None
    done = player.on_tick(player.wake_at_ms)
    assert [(d.command_id, d.played, d.played_ms) for d in done] == [(cmd.id, True, 200)]
    report = player.reports[cmd.id]
    assert (report.frames_received, report.frames_lost) == (10, 0)
    assert report.latency_ms == 80
    ack = contract.Ack(
        command_id=cmd.id,
        broadcast_id=cmd.broadcast_id,
        speaker="s1",
        status=contract.AckStatus.PLAYED,
        at_ms=1,
    )
    assert with_report(ack, report).frames_received == 10


def test_a_missing_frame_is_concealed_and_counted_lost() -> None:
    stream = _stream()
    player = LivePlayer(keep_payloads=True)
    player.join(_live_command(stream), 0.0)
    for seq in (0, 1, 3):
        player.on_frame(_frame(stream, seq, flags=int(seq == 0)), seq * 20.0)
    slots = player.due(1000.0)
    assert [(s.seq, s.payload is None) for s in slots] == [
        (0, False),
        (1, False),
        (2, True),
        (3, False),
    ]
    cmd_id = player.playing
    player.on_frame(_frame(stream, 3, kind=LiveKind.END), 100.0)
    done = player.on_tick(1000.0)
    assert [d.played for d in done] == [True]
    assert cmd_id is not None
    assert player.reports[cmd_id].frames_lost == 1


def test_forged_and_malformed_frames_are_ignored() -> None:
    stream = _stream()
    player = LivePlayer()
    player.join(_live_command(stream), 0.0)
    player.on_frame(_frame(stream, 0, key=b"x" * 32), 0.0)
    player.on_frame(b"not a frame at all, clearly not a frame", 0.0)
    assert (player.counters.forged, player.counters.malformed) == (1, 1)
    assert player.buffer is not None
    assert player.buffer.received == 0


def test_an_end_heard_during_the_chime_ends_the_stream_when_joined() -> None:
    stream = _stream()
    cmd = _live_command(stream)
    player = LivePlayer()
    player.on_frame(_frame(stream, 0, kind=LiveKind.END, flags=EndReason.CLIENT_LOST), 0.0)
    done = player.join(cmd, 10.0)
    assert [(d.command_id, d.played) for d in done] == [(cmd.id, False)]
    assert player.playing is None


def test_a_forged_end_heard_before_joining_changes_nothing() -> None:
    stream = _stream()
    player = LivePlayer()
    player.on_frame(_frame(stream, 0, kind=LiveKind.END, key=b"y" * 32), 0.0)
    assert player.join(_live_command(stream), 10.0) == []
    assert player.playing is not None


def test_silence_past_the_stall_time_ends_the_stream_interrupted() -> None:
    stream = _stream()
    cmd = _live_command(stream)
    player = LivePlayer()
    player.join(cmd, 0.0)
    player.on_frame(_frame(stream, 0, flags=1), 0.0)
    assert player.on_tick(500.0) == []
    done = player.on_tick(1000.0)
    assert [(d.command_id, d.played) for d in done] == [(cmd.id, False)]


def test_a_frame_after_its_slot_is_late() -> None:
    buffer = JitterBuffer(target_ms=60)
    assert buffer.push(0, 0, b"a", 0.0, restart=True)
    assert not buffer.push(1, 20, b"b", 200.0, restart=False)
    assert (buffer.received, buffer.late, buffer.lost_until(1)) == (1, 1, 1)


def test_a_long_talk_keeps_bounded_state_and_counts_losses_right() -> None:
    buffer = JitterBuffer(target_ms=80, keep_payloads=False)
    total = 20_000  # 400 s of talk
    for seq in range(total):
        if seq % 1000 == 500:
            continue  # a lost frame now and then
        at = seq * 20.0
        buffer.push(seq, int(at), b"x", at, restart=seq == 0)
    assert buffer.remembered <= 2000
    assert buffer.received == total - 20
    assert buffer.lost_until(total - 1) == 20
    # A stale duplicate from far back is not played again.
    assert not buffer.push(10, 10 * 20, b"x", total * 20.0, restart=False)


def test_frames_far_ahead_of_real_time_are_dropped_and_counted_lost() -> None:
    for keep in (True, False):
        buffer = JitterBuffer(target_ms=80, keep_payloads=keep)
        # Thirty seconds of talk in one burst: ten seconds are held, the rest is dropped.
        taken = [buffer.push(seq, 0, b"x", 0.0, restart=seq == 0) for seq in range(1500)]
        assert taken.count(True) == buffer.received <= 500
        assert buffer.early == 1500 - buffer.received
        assert buffer.lost_until(1499) == buffer.early
        slots = buffer.due(30_000.0)
        assert [s.seq for s in slots] == list(range(buffer.received))
        assert all(s.payload == b"x" for s in slots) or not keep


def test_a_flagged_frame_keeps_the_timeline_while_earlier_frames_wait() -> None:
    buffer = JitterBuffer(target_ms=100)
    for seq in range(5):
        buffer.push(seq, 0, b"x", 0.0, restart=seq == 0)
    # A talk spurt's flag on the next frame, before the buffer ran dry: it follows the others.
    assert buffer.push(5, 0, b"y", 10.0, restart=True)
    assert buffer.play_at(5) == 200.0
    # After a real pause the next spurt takes a new anchor.
    assert buffer.push(6, 0, b"z", 1000.0, restart=True)
    assert buffer.play_at(6) == 1100.0
    assert [s.seq for s in buffer.due(1100.0)] == [0, 1, 2, 3, 4, 5, 6]
