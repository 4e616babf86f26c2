"""The bus's fair queue: one bounded line per speaker, served in turn."""

from __future__ import annotations

import asyncio

import pytest

from gateway.bus import FairQueue, Incoming, QueueFull


def _ack(speaker: str, n: int) -> Incoming:
    return Incoming(f"maeul/v1/city/ack/{speaker}", str(n).encode())


def _take(queue: FairQueue, count: int) -> list[tuple[str, bytes]]:
    return [
        (item.topic.rpartition("/")[2], item.payload)
        for item in (queue.get_nowait() for _ in range(count))
    ]


def test_speakers_are_served_in_turn_each_in_its_own_order() -> None:
    queue = FairQueue()
    for n in range(3):
        queue.put_nowait(_ack("loud", n))
    queue.put_nowait(Incoming("maeul/v1/city/presence/quiet", b"birth"))
    queue.put_nowait(_ack("quiet", 0))
    assert queue.qsize() == 5
    assert queue.senders() == 2
    assert _take(queue, 5) == [
        ("loud", b"0"),
        ("quiet", b"birth"),
        ("loud", b"1"),
        ("quiet", b"0"),
        ("loud", b"2"),
    ]
    assert queue.empty()
    assert queue.senders() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


def test_a_full_line_drops_only_its_own_speakers_messages() -> None:
    queue = FairQueue(maxsize=5, per_sender=2)
    queue.put_nowait(_ack("loud", 0))
    queue.put_nowait(_ack("loud", 1))
    with pytest.raises(QueueFull) as line_full:
        queue.put_nowait(_ack("loud", 2))
    assert line_full.value.reason == "sender_full"
    for n in range(3):
        queue.put_nowait(_ack(f"s{n}", n))
    with pytest.raises(QueueFull) as queue_full:
        queue.put_nowait(_ack("late", 0))
    assert queue_full.value.reason == "queue_full"
    assert isinstance(queue_full.value, asyncio.QueueFull)


async def test_get_waits_for_the_next_message() -> None:
    queue = FairQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.put_nowait(_ack("s", 1))
    assert (await waiting).payload == b"1"
