"""Live frames on the wire: round trip, tag, size limits."""

from __future__ import annotations

import pytest

from wire import contract
from wire.contract import LiveFrame, LiveKind


def test_a_frame_round_trips_and_its_tag_checks() -> None:
    key = contract.LiveStream(session="cd" * 16, key=contract.new_live_key()).key_bytes()
    frame = LiveFrame(LiveKind.AUDIO, contract.LIVE_START_FLAG, "cd" * 16, 7, 123, b"\x78opus")
    decoded = contract.decode_live_frame(contract.encode_live_frame(frame, key))
    assert (decoded.kind, decoded.seq, decoded.at_ms, decoded.payload) == (
        LiveKind.AUDIO,
        7,
        123,
        b"\x78opus",
    )
    assert decoded.starts_spurt
    assert decoded.verify(key)
    assert not decoded.verify(b"k" * 32)


def test_oversized_and_foreign_frames_are_refused() -> None:
    key = b"k" * 32
    with pytest.raises(contract.WireError):
        contract.encode_live_frame(LiveFrame(LiveKind.AUDIO, 0, "cd" * 16, 0, 0, bytes(4000)), key)
    with pytest.raises(contract.WireError):
        contract.decode_live_frame(b"\x00" * 60)
    with pytest.raises(contract.WireError):
        contract.decode_live_frame(b"L")


def test_live_topics_are_told_apart_from_command_topics() -> None:
    topics = contract.live_subscriptions("jinju", "d01", "d01-v001")
    assert all(contract.is_live_topic(t) for t in topics)
    assert not contract.is_live_topic(contract.command_topic_village("jinju", "d01-v001"))
    assert not contract.is_live_topic(contract.ack_topic("jinju", "s1"))
