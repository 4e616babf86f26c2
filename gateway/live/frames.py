"""A talking client's audio on its way to the speakers: each binary message checked, turned
into 20 ms Opus packets (in a thread when that blocks), paced to real time, recorded and
published as signed live frames; and the control frames that pause or end a session.

A message that cannot be used is dropped with a warning to the client; too many of them, or
audio far ahead of real time, end the session (`Refused`).

A client that stamps its audio (`TicketCreate.stamped`) starts each message with the capture
time of its last sample, on the gateway's clock. The packets the message completes are taken
as the 20 ms just before it, one after the other, and each frame says how long before the
gateway's receipt its first sample was captured (its capture lag, `wire.contract.lag_flags`).
A stamp far from the receipt (a client's clock estimate gone wrong) leaves its frames without.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from typing import Final

from gateway.live import messages
from gateway.live.fanout import FanoutUnavailable, LiveBus
from gateway.live.ingest import FRAME_MS, MAX_MESSAGE_BYTES, NotAudio
from gateway.live.runs import Refused, Run
from gateway.live.settings import LiveSettings
from wire import contract
from wire.contract import LiveFrame, LiveKind

log = logging.getLogger(__name__)

STAMP: Final = struct.Struct(">Q")
# A stamp ahead of the receipt by up to this is a clock estimate's error (said as no lag);
# further ahead, or further behind than `_STAMP_BEHIND_MS`, it is a clock gone wrong.
_STAMP_AHEAD_MS: Final = 1_000
_STAMP_BEHIND_MS: Final = 10_000


def checked_stamp(run: Run, stamp_ms: int, received_ms: int) -> int | None:
    """A message's capture stamp, or None (counted, and logged once) when it cannot be right."""
    if -_STAMP_AHEAD_MS <= received_ms - stamp_ms <= _STAMP_BEHIND_MS:
        return stamp_ms
    run.bad_stamps += 1
    if run.bad_stamps == 1:
        log.warning(
            "live session %s: a capture stamp %d ms from the receipt was ignored (the talking "
            "client's clock estimate is off); its frames say no capture lag",
            run.broadcast_id,
            received_ms - stamp_ms,
        )
    return None


async def feed(
    bus: LiveBus, live: LiveSettings, run: Run, data: bytes, *, received_ms: int
) -> None:
    limit = MAX_MESSAGE_BYTES[run.input_format]
    captured_end: int | None = None
    if run.stamped:
        if len(data) <= STAMP.size:
            await invalid(
                live,
                run,
                "not_audio",
                "시각이 붙은 오디오 메시지가 아닙니다. 이 메시지는 버려졌습니다.",
                "A stamped message starts with its 8-byte capture time; it was dropped.",
            )
            return
        captured_end = checked_stamp(run, STAMP.unpack_from(data)[0], received_ms)
        data = data[STAMP.size :]
    if len(data) > limit:
        await invalid(
            live,
            run,
            "frame_too_large",
            "오디오 메시지가 너무 큽니다. 이 메시지는 버려졌습니다.",
            f"A {run.input_format} message has at most {limit} bytes; it was dropped.",
        )
        return
    try:
        if run.ingest.blocking:
            packets = await asyncio.to_thread(run.ingest.feed, data)
        else:
            packets = run.ingest.feed(data)
    except NotAudio as exc:
        await invalid(
            live,
            run,
            "not_audio",
            "알린 형식의 오디오가 아닙니다. 이 메시지는 버려졌습니다.",
            f"Not {run.input_format} audio ({exc}); it was dropped.",
        )
        return
    for index, packet in enumerate(packets):
        if run.ended.is_set():
            return  # ended meanwhile (elsewhere): nothing may follow the END frame
        if not run.frames_bucket.take():
            run.dropped += 1
            await flooded(live, run)
            continue
        lag_ms = None
        if captured_end is not None:
            lag_ms = received_ms - (captured_end - (len(packets) - index) * FRAME_MS)
        frame = LiveFrame(
            kind=LiveKind.AUDIO,
            flags=(contract.LIVE_START_FLAG if run.spurt else 0) | contract.lag_flags(lag_ms),
            session=run.broadcast_id,
            seq=run.seq,
            at_ms=received_ms,
            payload=packet,
        )
        run.spurt = False
        run.paused = False
        run.heard = time.monotonic()
        run.seq += 1
        run.frames += 1
        run.recorder.add(packet)
        try:
            await bus.publish(
                run.opened.topics,
                contract.encode_live_frame(frame, run.key),
                qos=contract.LIVE_FRAME_QOS,
            )
        except FanoutUnavailable:
            run.dropped += 1


async def invalid(live: LiveSettings, run: Run, code: str, ko: str, en: str) -> None:
    """A message that cannot be used: the client is told; too many end the session."""
    run.invalid += 1
    if run.invalid > live.invalid_limit:
        raise Refused(
            "not_audio",
            "오디오가 아닌 데이터를 너무 많이 보내 방송을 끝냈습니다.",
            f"Too many messages that are not audio in the announced format ({code}).",
        )
    await messages.send(run, messages.warning(code, ko, en))


async def flooded(live: LiveSettings, run: Run) -> None:
    """Audio (or messages) ahead of real time beyond the burst: dropped; too many end it."""
    run.flooded += 1
    if run.flooded > live.flood_limit:
        raise Refused(
            "live_flood",
            "실시간보다 빠르게 너무 많은 오디오를 보내 방송을 끝냈습니다.",
            "Audio arrived much faster than real time; the session was ended.",
        )
    if run.flooded == 1 or run.flooded % 50 == 0:
        await messages.send(
            run,
            messages.warning(
                "live_flood",
                "실시간보다 빠르게 보낸 오디오는 버립니다.",
                "Audio ahead of real time beyond the allowed burst is dropped.",
            ),
        )


async def control(bus: LiveBus, run: Run, kind: LiveKind, flags: int = 0) -> None:
    frame = LiveFrame(
        kind=kind,
        flags=flags,
        session=run.broadcast_id,
        seq=max(0, run.seq - 1),
        at_ms=contract.now_ms(),
    )
    with contextlib.suppress(FanoutUnavailable):
        await bus.publish(
            run.opened.topics,
            contract.encode_live_frame(frame, run.key),
            qos=contract.LIVE_CONTROL_QOS,
        )


async def pause(bus: LiveBus, run: Run) -> None:
    run.heard = time.monotonic()
    if not run.paused:
        run.paused, run.spurt = True, True
        await control(bus, run, LiveKind.PAUSE)
