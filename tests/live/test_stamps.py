"""Mouth to horn through the gateway: a stamped talk, its frames, the speakers' reports, the
per-village figures the board and the report show."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import numpy as np

from devices.live import LivePlayer, with_report
from gateway.live.fanout import FakeLiveBus
from gateway.live.hub import LiveHub
from tests.flow.conftest import Stack, stack  # noqa: F401 - the fixture
from tests.flow.test_broadcast_flow import _ack
from tests.live.test_hub import FakeSocket
from wire import contract
from wire.contract import AckStatus, LiveKind

FRAME_BYTES = 640  # 20 ms of 16 kHz PCM: one packet per message
TALK = 25
# The speakers' buffer here: long enough that no frame is late however the test machine paces.
JITTER_MS = 3000
_REPORTED = ("frames_received", "frames_lost", "latency_ms", "mouth_p50_ms", "mouth_p95_ms")


def _pcm(frames: int) -> bytes:
    t = np.arange(320 * frames) / 16000
    return (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


def _stamped(captured_until_ms: int, pcm: bytes) -> bytes:
    return struct.pack(">Q", captured_until_ms) + pcm


async def _open(gateway: Stack, **extra: Any) -> tuple[FakeSocket, asyncio.Task[None], str]:
    districts = (await gateway.client.get("/api/v1/districts")).json()["items"]
    body = {"category": "village_notice", "district_ids": [districts[0]["id"]], **extra}
    ticket = await gateway.client.post("/api/v1/live/tickets", json=body)
    assert ticket.status_code == 201, ticket.text
    socket = FakeSocket()
    hub: LiveHub = gateway.app.state.live
    serving = asyncio.create_task(hub.serve(socket, ticket.json()["ticket"]))  # type: ignore[arg-type]
    await _said(socket, "started")
    return socket, serving, str(socket.sent[0]["broadcast_id"])


async def _said(socket: FakeSocket, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while kind not in socket.kinds():  # noqa: ASYNC110 - the fake socket has no event
            await asyncio.sleep(0.01)
    return next(m for m in socket.sent if m["type"] == kind)


async def test_a_live_talk_ends_with_each_speakers_figures_kept_and_each_villages_shown(
    stack: Stack,  # noqa: F811
) -> None:
    socket, serving, broadcast_id = await _open(stack, stamped=True)
    await stack.publish_pending()
    [command] = [
        c
        for c in (contract.decode_command(p) for _, p, _, _ in stack.bus.published)
        if c.broadcast_id == broadcast_id
    ]
    assert command.live is not None
    socket.put('{"type": "clock", "t": 1234.5}')
    answer = await _said(socket, "clock")
    assert answer["t"] == 1234.5
    assert isinstance(answer["server_ms"], int)

    pcm = _pcm(TALK)
    stamps = []
    for index in range(TALK):
        stamps.append(contract.now_ms() - 30)  # captured until a moment ago
        socket.put(_stamped(stamps[-1], pcm[index * FRAME_BYTES : (index + 1) * FRAME_BYTES]))
    socket.put(_stamped(0, pcm[:FRAME_BYTES]))  # a client's clock gone wrong: no lag
    socket.put(b"\x00" * 4)  # too short to hold a stamp: dropped, with a warning
    socket.put('{"type": "stop"}')
    await asyncio.wait_for(serving, 30)
    assert socket.sent[-1]["reason"] == "stopped"
    assert any(m.get("error") == "not_audio" for m in socket.sent if m["type"] == "warning")
    bus = stack.app.state.live._bus
    assert isinstance(bus, FakeLiveBus)
    frames = [p for _, p, _ in bus.published]
    audio = [
        f
        for f in map(contract.decode_live_frame, frames)
        if f.kind is LiveKind.AUDIO and f.session == broadcast_id
    ]
    assert [f.seq for f in audio] == list(range(TALK + 1))
    for frame, stamp in zip(audio, stamps, strict=False):
        # Its first sample: 20 ms before the message's last, said to 5 ms (or as the longest
        # lag a frame can say).
        first = max(stamp - 20, frame.at_ms - contract.MAX_LIVE_LAG_MS)
        assert frame.captured_ms is not None
        assert abs(frame.captured_ms - first) <= 3, (frame, stamp)
    assert audio[-1].captured_ms is None

    detail = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    codes = [s["code"] for v in detail["village_deliveries"] for s in v["speakers"]]
    assert len(codes) >= 3
    # Each speaker plays what came through the speakers' own code, each frame heard when the
    # gateway had it (its clock is the gateway's) with a buffer long enough for any pace. The
    # second missed frames 5 and 6, and its horn sounds 100 ms after each slot (an agent's lead).
    reports = {}
    for index, code in enumerate(codes):
        player = LivePlayer(jitter_ms=JITTER_MS, output_lead_ms=100 * (index == 1))
        player.join(command, 0.0)
        for data in frames:
            frame = contract.decode_live_frame(data)
            if index == 1 and frame.kind is LiveKind.AUDIO and frame.seq in (5, 6):
                continue
            player.on_frame(data, float(frame.at_ms))
        assert [d.played for d in player.on_tick(player.wake_at_ms or 0.0)] == [True]
        report = reports[code] = player.reports[command.id]
        for status in (AckStatus.RECEIVED, AckStatus.PLAYING):
            _ack(stack, command, code, status)
        played = contract.Ack(
            command_id=command.id,
            broadcast_id=broadcast_id,
            speaker=code,
            status=AckStatus.PLAYED,
            at_ms=contract.now_ms(),
        )
        extra = with_report(played, report).model_dump(include=set(_REPORTED))
        if index == 2:  # nonsense: more lost than were sent, p50 above p95
            extra.update(frames_lost=10_000, mouth_p50_ms=900, mouth_p95_ms=100)
        _ack(stack, command, code, AckStatus.PLAYED, **extra)
    await stack.deliver()

    detail = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    speakers = {s["code"]: s for v in detail["village_deliveries"] for s in v["speakers"]}
    for index, code in enumerate(codes):
        shown, report = speakers[code], reports[code]
        assert shown["state"] == "played"
        if index == 2:
            # Cut to the frames sent; figures that cannot be are not kept.
            assert shown["live_frames_lost"] == TALK + 1
            assert (shown["live_mouth_p50_ms"], shown["live_mouth_p95_ms"]) == (None, None)
            continue
        assert report.mouth_p50_ms is not None
        assert report.mouth_p95_ms is not None
        # From a capture before the gateway had the frame, through the whole buffer.
        assert JITTER_MS <= report.mouth_p50_ms <= report.mouth_p95_ms
        assert (shown["live_mouth_p50_ms"], shown["live_mouth_p95_ms"]) == (
            report.mouth_p50_ms,
            report.mouth_p95_ms,
        )
        assert shown["live_frames_lost"] == report.frames_lost == (2 if index == 1 else 0)
    assert speakers[codes[1]]["live_mouth_p50_ms"] >= JITTER_MS + 100
    for village in detail["village_deliveries"]:
        reported = [speakers[s["code"]] for s in village["speakers"]]
        p95s = [s["live_mouth_p95_ms"] for s in reported if s["live_mouth_p95_ms"] is not None]
        # A village shows its slowest speaker's p95, and the frames its speakers lost.
        assert village["live_mouth_p95_ms"] == (max(p95s) if p95s else None)
        assert village["live_frames_lost"] == sum(s["live_frames_lost"] for s in reported)
