"""A live session as this replica holds it while it is spoken: its ticket, its running state
and the token buckets that pace the talking client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import WebSocket

from gateway.auth import Principal
from gateway.live import service
from gateway.live.ingest import Ingest, InputFormat
from gateway.live.recorder import Recorder
from wire.contract import EndReason

FRAME_MS: Final = 20
# Messages of any kind, per second and as a burst: audio comes 50 times a second or less.
_MESSAGES_PER_S: Final = 100.0
_MESSAGE_BURST: Final = 200.0
# Pauses passed on to the speakers (each goes to every one at QoS 1), per second and as a burst.
_CONTROLS_PER_S: Final = 2.0
_CONTROL_BURST: Final = 10.0


@dataclass
class Ticket:
    principal: Principal
    request: service.LiveRequest
    input_format: InputFormat
    rate: int
    resume: str | None
    expires_at: float
    stamped: bool = False


@dataclass
class Bucket:
    """A token bucket: `rate` tokens a second, at most `capacity` saved up."""

    rate: float
    capacity: float
    tokens: float = -1.0
    at: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.capacity
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Refused(Exception):
    """The client broke the protocol: tell it `code`, close 1008, end its session."""

    def __init__(self, code: str, ko: str, en: str) -> None:
        super().__init__(f"{code}: {en}")
        self.code, self.detail = code, f"{ko} / {en}"


@dataclass
class Run:
    """A live session on this replica."""

    opened: service.Opened
    actor: str
    key: bytes
    ingest: Ingest
    input_format: InputFormat
    chime_ms: int
    recorder: Recorder
    frames_bucket: Bucket  # audio in media time: ahead of real time by at most burst_ms
    started: float = field(default_factory=time.monotonic)
    messages: Bucket = field(default_factory=lambda: Bucket(_MESSAGES_PER_S, _MESSAGE_BURST))
    controls: Bucket = field(default_factory=lambda: Bucket(_CONTROLS_PER_S, _CONTROL_BURST))
    # Binary messages start with their capture time (`TicketCreate.stamped`).
    stamped: bool = False
    # Stamps out of bounds (a talking client's clock estimate gone wrong): their frames go
    # without a capture lag.
    bad_stamps: int = 0
    seq: int = 0
    frames: int = 0
    dropped: int = 0
    invalid: int = 0
    flooded: int = 0
    # When audio last went out (or the session started): silence beyond stall pauses it.
    heard: float = field(default_factory=time.monotonic)
    spurt: bool = True  # the next audio frame starts a talk spurt
    paused: bool = False
    attached: bool = True
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str | None = None
    ending: asyncio.Task[None] | None = None
    grace: asyncio.TimerHandle | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    socket: WebSocket | None = None

    @property
    def broadcast_id(self) -> str:
        return self.opened.broadcast_id


# Ends a run once, whoever asks first (`LiveHub._end`); awaiting the result waits for the end.
End = Callable[[Run, EndReason, str], asyncio.Future[None]]
