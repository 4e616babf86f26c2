"""The adaptive jitter buffer, fed synthetic arrival times: low on a clean network, growing to
cover jitter, back down after a stall, and only ever moving where nothing is said."""

from __future__ import annotations

import random

from devices.jitter import Adaptive
from devices.live import JitterBuffer

POLICY = Adaptive(floor_ms=30, ceiling_ms=400, margin_ms=10)
SPURT = 50  # frames per talk spurt (a second)
PAUSE_MS = 600.0


def _talk(
    buffer: JitterBuffer,
    spurts: int,
    delay_of: random.Random | None = None,
    *,
    jitter_ms: float = 0.0,
    stall: tuple[int, float] | None = None,
    first_seq: int = 0,
    start_ms: float = 0.0,
) -> tuple[int, float]:
    """Spurts of speech with pauses between them, each frame delayed by the network: 5 ms,
    plus up to `jitter_ms` at random, and frames sent while a `stall` (seq, ms) held the
    link come when it ends. Frames arrive in order, as over TCP. Returns where it ended."""
    seq, sent_at = first_seq, start_ms
    held_until = 0.0
    for _ in range(spurts):
        arrived = 0.0
        for index in range(SPURT):
            at = sent_at + index * 20
            arrival = at + 5 + (delay_of.uniform(0, jitter_ms) if delay_of else 0.0)
            if stall is not None and seq == stall[0]:
                held_until = at + stall[1] + 5
            arrival = max(arrival, held_until)
            arrived = max(arrived, arrival)
            buffer.push(seq, int(at), b"", arrived, restart=index == 0)
            seq += 1
        sent_at += SPURT * 20 + PAUSE_MS
    return seq, sent_at


def _buffer(target_ms: float) -> JitterBuffer:
    return JitterBuffer(target_ms=target_ms, keep_payloads=False, adaptive=POLICY)


def test_on_a_clean_network_the_target_settles_at_the_floor_without_loss() -> None:
    buffer = _buffer(120)
    seq, at = _talk(buffer, spurts=10)
    assert buffer.target_ms < POLICY.floor_ms + 5
    buffer.take_latency()
    last, _ = _talk(buffer, spurts=2, first_seq=seq, start_ms=at)
    assert buffer.lost_until(last - 1) == 0
    # Latency is the network's 5 ms and the buffer's target: far under a fixed 80 ms.
    assert buffer.latency.percentile(0.95) == 5 + POLICY.floor_ms


def test_under_jitter_the_target_grows_to_cover_it() -> None:
    rng = random.Random(5)
    buffer = _buffer(POLICY.floor_ms)
    seq, at = _talk(buffer, spurts=5, delay_of=rng, jitter_ms=60)
    assert buffer.target_ms >= 60 * 0.95, "it covers the 95th percentile of the jitter"
    last, _ = _talk(buffer, spurts=10, delay_of=rng, jitter_ms=60, first_seq=seq, start_ms=at)
    assert buffer.lost_until(last - 1) <= 0.02 * last
    assert buffer.target_ms <= 60 + 2 * POLICY.margin_ms, "and no more"


def test_a_fixed_buffer_under_the_same_jitter_keeps_losing() -> None:
    rng = random.Random(5)
    buffer = JitterBuffer(target_ms=POLICY.floor_ms, keep_payloads=False)
    last, _ = _talk(buffer, spurts=15, delay_of=rng, jitter_ms=60)
    assert buffer.lost_until(last - 1) > 0.05 * last
    assert buffer.target_ms == POLICY.floor_ms


def test_after_a_stall_it_grows_at_once_then_comes_back_down() -> None:
    buffer = _buffer(POLICY.floor_ms)
    seq, at = _talk(buffer, spurts=2)
    stalled = seq + 10
    seq, at = _talk(buffer, spurts=2, stall=(stalled, 300), first_seq=seq, start_ms=at)
    assert buffer.target_max_ms >= 250, "a stall grows the buffer as soon as frames come late"
    assert buffer.lost_until(seq - 1) == 0, "the talk waits out the stall and goes on"
    last, _ = _talk(buffer, spurts=20, first_seq=seq, start_ms=at)
    assert buffer.lost_until(last - 1) == 0
    assert buffer.target_ms < POLICY.floor_ms + 10, "clean again: back near the floor"


def test_the_target_moves_down_only_at_a_talk_spurts_start() -> None:
    buffer = _buffer(200)
    for seq in range(SPURT):  # one long spurt on a clean network
        buffer.push(seq, seq * 20, b"", seq * 20.0 + 5, restart=seq == 0)
    assert buffer.target_ms == 200, "not mid-word"
    # The next spurt, after a pause, starts on a lower target.
    buffer.push(SPURT, SPURT * 20, b"", SPURT * 20.0 + 2000, restart=True)
    assert buffer.target_ms < 200
    assert buffer.play_at(SPURT) == SPURT * 20.0 + 2000 + buffer.target_ms


def test_growing_never_replays_a_slot_already_concealed() -> None:
    buffer = JitterBuffer(target_ms=POLICY.floor_ms, keep_payloads=True, adaptive=POLICY)
    for seq in range(5):
        buffer.push(seq, 0, b"x", seq * 20.0, restart=seq == 0)
    assert [s.seq for s in buffer.due(300.0)] == [0, 1, 2, 3, 4]  # then nothing came
    # Frame 6 comes long after its slot: the buffer grows, and the talk goes on from 5.
    assert buffer.push(6, 0, b"y", 300.0, restart=False)
    assert buffer.target_ms > 150
    assert [(s.seq, s.payload) for s in buffer.due(305.0)] == [(5, None)]
    assert not buffer.push(5, 0, b"z", 306.0, restart=False), "its slot was concealed"
    assert buffer.lost_until(6) == 1
