"""This replica's live sessions: tickets, the talking client's WebSocket, frames out, the ending.

One `LiveHub` per app, owned by its lifespan. A session lives here while it is spoken; its
record (`gateway.live.service`) is written in short transactions: at the start, now and then
while it runs, and at the end. No database session lives as long as a WebSocket.

The WebSocket protocol (JSON text both ways, audio as binary messages from the client)::

    client                                  gateway
    (connect with ?ticket=...)      ─────▶
                                    ◀─────  {"type": "started", "broadcast_id", "chime_ms", ...}
                                    ◀─────  {"type": "ready"}            the chime has played: talk
    binary audio (ticket's format)  ─────▶
    {"type": "pause"} / {"type": "resume"}
                                    ◀─────  {"type": "status", "playing", "played", "speakers", ...}
    {"type": "stop"}                ─────▶
                                    ◀─────  {"type": "ended", "reason", "recording_sha256", ...}
                                    ◀─────  {"type": "warning", "error", "detail"}  a message
                                            was dropped (not audio, too large, ahead of real
                                            time); the session goes on
                                    ◀─────  {"type": "error", "error", "detail"}  (then a close)

A client that vanishes without "stop" has `LiveSettings.grace_s` to come back with a ticket that
names the session in ``resume``; speakers hold (paused) meanwhile, then the session ends
``client_lost`` and every speaker ends ``failed``/``interrupted``. A client that stays connected
but sends no audio is paused for it (speakers hold instead of stalling) and, after
`LiveSettings.idle_s`, ended ``idle`` shortly before the speakers would give up on their own.

Replicas: tickets and a running session (its socket, ingest state, recording and frame counter)
live in this replica's memory, because the WebSocket does. The load balancer keeps a client on
one replica (``ip_hash``), so a ticket is used where it was issued. Everything another replica
needs is in the database: the session row (its key for the outbox, ``alive_at`` renewed while it
runs, for conflicts) and the broadcast. A session whose replica died is ended by any other
replica once ``alive_at`` is stale (`service.close_stale`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from fastapi import WebSocket, WebSocketDisconnect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio.chimes import chime
from audio.pipeline import AudioOptions, Encoded, encode
from gateway.auth import Principal
from gateway.deps import Runtime
from gateway.errors import (
    Conflict,
    MaeulError,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from gateway.live import service
from gateway.live.fanout import FanoutUnavailable, LiveBus
from gateway.live.ingest import MAX_MESSAGE_BYTES, Ingest, InputFormat, NotAudio, make_ingest
from gateway.live.recorder import Recorder, Recording
from gateway.live.schemas import TicketCreate, TicketRead
from gateway.live.settings import LiveSettings
from gateway.places.models import City
from gateway.users import service as users
from wire import contract
from wire.contract import EndReason, LiveFrame, LiveKind

log = logging.getLogger(__name__)

POLICY_VIOLATION: Final = 1008
INTERNAL_ERROR: Final = 1011
_STATUS_EVERY_S: Final = 1.0
_ALIVE_EVERY_S: Final = 5.0
# After the start command is published, the time for it to reach the speakers on top of the chime.
_READY_MARGIN_S: Final = 0.15
# The outbox has this long to publish the start command before the session is given up.
_START_TIMEOUT_S: Final = 30.0
_FRAME_MS: Final = 20
# Messages of any kind, per second and as a burst: audio comes 50 times a second or less.
_MESSAGES_PER_S: Final = 100.0
_MESSAGE_BURST: Final = 200.0
# Pauses passed on to the speakers (each goes to every one at QoS 1), per second and as a burst.
_CONTROLS_PER_S: Final = 2.0
_CONTROL_BURST: Final = 10.0
_MAX_TEXT_CHARS: Final = 256
# Unused tickets one person may hold at once.
_TICKETS_PER_ACTOR: Final = 5
# How often open sessions whose replica stopped renewing them are looked for.
_SWEEP_EVERY_S: Final = 10.0
# Ending a session in the record is tried this often before it is left to `close_stale`.
_END_ATTEMPTS: Final = 3
# Endings imposed from outside the talking client (its account was suspended): the client is
# told why in words, and the socket closes as a policy decision (1008) naming the reason.
_IMPOSED: Final = {
    "owner_suspended": (
        "계정이 정지되어 실시간 방송을 끝냈습니다. 시청 관리자에게 문의해 주세요.",
        "Your account was suspended; the live session was ended.",
    ),
    "owner_removed": (
        "계정이 없어져 실시간 방송을 끝냈습니다.",
        "Your account no longer exists; the live session was ended.",
    ),
}


@dataclass
class _Ticket:
    principal: Principal
    request: service.LiveRequest
    input_format: InputFormat
    rate: int
    resume: str | None
    expires_at: float


@dataclass
class _Bucket:
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


class _Refused(Exception):
    """The client broke the protocol: tell it `code`, close 1008, end its session."""

    def __init__(self, code: str, ko: str, en: str) -> None:
        super().__init__(f"{code}: {en}")
        self.code, self.detail = code, f"{ko} / {en}"


@dataclass
class _Run:
    """A live session on this replica."""

    opened: service.Opened
    actor: str
    key: bytes
    ingest: Ingest
    input_format: InputFormat
    chime_ms: int
    recorder: Recorder
    frames_bucket: _Bucket  # audio in media time: ahead of real time by at most burst_ms
    started: float = field(default_factory=time.monotonic)
    messages: _Bucket = field(default_factory=lambda: _Bucket(_MESSAGES_PER_S, _MESSAGE_BURST))
    controls: _Bucket = field(default_factory=lambda: _Bucket(_CONTROLS_PER_S, _CONTROL_BURST))
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


class LiveHub:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        runtime: Runtime,
        live: LiveSettings,
        bus: LiveBus,
        *,
        city_id: int,
        wake_publisher: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._live = live
        self._bus = bus
        self._city_id = city_id
        self._wake = wake_publisher
        self._tickets: dict[str, _Ticket] = {}
        self._runs: dict[str, _Run] = {}
        self._chimes: dict[str, Encoded] = {}
        self._chime_lock = asyncio.Lock()
        # Opening is check-then-write: one at a time here (the database locks across replicas).
        self._open_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False

    @property
    def settings(self) -> LiveSettings:
        return self._live

    @property
    def sessions_on_air(self) -> int:
        return len(self._runs)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        async with self._sessions() as session:
            closed = await service.close_abandoned(
                session, self._runtime.settings.replica_id, self._runtime.clock.now()
            )
            await session.commit()
        if closed:
            log.warning("%d live session(s) left open by an earlier run were ended", closed)
        await self._close_stale()
        self._spawn(self._sweep(), "live-sweep")

    async def close(self) -> None:
        """End every session on air in the record (speakers are told), then stop."""
        self._closing = True
        for run in list(self._runs.values()):
            self._end(run, EndReason.FAILED, "gateway_stopped")
        endings = [t for t in self._background if t.get_name().startswith("live-end")]
        if endings:
            await asyncio.wait(endings, timeout=_END_ATTEMPTS * 5.0)
        for task in list(self._background):
            task.cancel()

    # -- tickets ------------------------------------------------------------------------

    async def issue_ticket(
        self, session: AsyncSession, city: City, principal: Principal, body: TicketCreate
    ) -> TicketRead:
        """Check the request now (403, 409, 422 come back over HTTP) and hand out a ticket."""
        self._drop_stale_tickets()
        held = sum(1 for t in self._tickets.values() if t.principal.actor == principal.actor)
        if held >= _TICKETS_PER_ACTOR:
            raise TooManyRequests(
                "too_many_tickets",
                ko="사용하지 않은 실시간 방송 입장권이 너무 많습니다. 잠시 후 다시 시도해 주세요.",
                en="Too many unused live tickets; use one or wait until they expire.",
                retry_after_s=self._live.ticket_ttl_s,
            )
        request = service.LiveRequest(
            category=body.category,
            title=body.title,
            all_villages=body.all,
            district_ids=tuple(body.district_ids),
            village_ids=tuple(body.village_ids),
            principal=principal,
        )
        if body.resume is not None:
            run = self._runs.get(body.resume)
            if run is None or run.ended.is_set() or run.actor != principal.actor:
                raise _not_found()
        else:
            target = await service.check_request(session, self._runtime, city, request, self._live)
            priority = self._runtime.settings.priority_of(body.category)
            now = self._runtime.clock.now()
            if self._live.conflict == "refuse" and await service.busy(
                session, city, target.village_ids, priority, now
            ):
                raise service.live_busy()
        token = secrets.token_urlsafe(24)
        self._tickets[token] = _Ticket(
            principal=principal,
            request=request,
            input_format=body.format,
            rate=body.sample_rate,
            resume=body.resume,
            expires_at=time.monotonic() + self._live.ticket_ttl_s,
        )
        return TicketRead(
            ticket=token,
            expires_in_s=self._live.ticket_ttl_s,
            url=f"/api/v1/live/ws?ticket={token}",
        )

    def _drop_stale_tickets(self) -> None:
        now = time.monotonic()
        for token in [t for t, ticket in self._tickets.items() if ticket.expires_at < now]:
            del self._tickets[token]

    def _take_ticket(self, token: str) -> _Ticket:
        self._drop_stale_tickets()
        ticket = self._tickets.pop(token, None)  # single use
        if ticket is None:
            raise Unauthorized(
                "invalid_ticket",
                ko="실시간 방송 입장권이 없거나 만료되었습니다.",
                en="The live ticket is unknown, used or expired; ask for a new one.",
            )
        return ticket

    # -- the WebSocket ------------------------------------------------------------------

    async def serve(self, websocket: WebSocket, token: str) -> None:
        """Run one talking client's connection to its end."""
        run: _Run | None = None
        try:
            # Spent before the connection is accepted: the server logs the accepted path with
            # its query, and a ticket there must already be worthless.
            ticket = self._take_ticket(token)
            if self._closing:
                raise Unavailable(
                    "gateway_stopping",
                    ko="게이트웨이가 멈추는 중입니다. 잠시 후 다시 시도해 주세요.",
                    en="The gateway is stopping; try again in a moment.",
                )
        except MaeulError as exc:
            await websocket.accept()
            await _refuse(websocket, exc.code, exc.detail)
            return
        await websocket.accept()
        try:
            if ticket.resume is not None:
                run = self._resume(ticket)
                run.socket, run.attached = websocket, True
                if run.frames:
                    await websocket.send_json({"type": "resumed", "broadcast_id": run.broadcast_id})
            else:
                # From here on the session is in the record: every way out of this function
                # ends it (now, or after the grace period in `finally`).
                run = await self._open(websocket, ticket)
                await websocket.send_json(_started(run))
            await self._talk(websocket, run)
        except (MaeulError, _Refused) as exc:
            if run is not None and run.socket is websocket:
                # Ended in the record first: the client may try again as soon as it is told.
                run.socket, run.attached = None, False
                await self._end(run, EndReason.FAILED, exc.code)
            await _refuse(websocket, exc.code, exc.detail)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("live session failed")
            if run is not None and run.socket is websocket:
                run.socket, run.attached = None, False
                await self._end(run, EndReason.FAILED, "gateway_error")
            await _refuse(
                websocket,
                "internal_error",
                "실시간 방송 중 서버 오류가 발생했습니다.",
                "The gateway failed during the live session.",
                close_code=INTERNAL_ERROR,
            )
        finally:
            if run is not None and run.socket is websocket:
                run.socket, run.attached = None, False
                if not run.ended.is_set():
                    await self._orphan(run)

    async def _open(self, websocket: WebSocket, ticket: _Ticket) -> _Run:
        request = ticket.request
        encoded = await self._chime(request.category.value)
        # Made before the record is written: nothing may fail between the commit and the run.
        ingest = make_ingest(ticket.input_format, rate=ticket.rate, bitrate=self._live.opus_bitrate)
        waited = time.monotonic()
        while True:
            try:
                async with self._open_lock, self._sessions() as session:
                    city = await session.get(City, self._city_id)
                    assert city is not None
                    # The ticket was issued before: its holder may have been suspended since.
                    account = await users.account_state(session, request.principal.actor)
                    if account not in ("active", "system"):
                        raise users.account_suspended()
                    opened = await service.open_session(
                        session,
                        self._runtime,
                        city,
                        request,
                        self._live,
                        chime=encoded,
                        input_format=ticket.input_format,
                    )
                    await session.commit()
                break
            except Conflict as exc:
                queue = self._live.conflict == "queue" and exc.code == "live_busy"
                if not queue or time.monotonic() - waited > self._live.queue_wait_s:
                    raise
                await websocket.send_json({"type": "queued"})
                await asyncio.sleep(1.0)
        run = _Run(
            opened=opened,
            actor=ticket.principal.actor,
            key=opened.stream.key_bytes(),
            ingest=ingest,
            input_format=ticket.input_format,
            chime_ms=encoded.duration_ms,
            recorder=Recorder(max_ms=self._live.max_s * 1000 + self._live.burst_ms),
            frames_bucket=_Bucket(1000 / _FRAME_MS, self._live.burst_ms / _FRAME_MS),
            socket=websocket,
        )
        self._runs[run.broadcast_id] = run
        run.tasks += [
            self._spawn(self._announce_ready(run), f"live-ready-{run.broadcast_id}"),
            self._spawn(self._report(run), f"live-status-{run.broadcast_id}"),
            self._spawn(self._watch(run), f"live-watch-{run.broadcast_id}"),
        ]
        self._wake()
        return run

    def _resume(self, ticket: _Ticket) -> _Run:
        run = self._runs.get(ticket.resume or "")
        if run is None or run.ended.is_set() or run.actor != ticket.principal.actor:
            raise _not_found()
        if run.attached:
            raise Conflict(
                "live_attached",
                ko="이 실시간 방송은 다른 연결에서 진행 중입니다.",
                en="This live session is being spoken from another connection.",
            )
        if run.grace is not None:
            run.grace.cancel()
            run.grace = None
        run.spurt = True
        run.heard = time.monotonic()
        return run

    async def _talk(self, websocket: WebSocket, run: _Run) -> None:
        while not run.ended.is_set():
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if run.ended.is_set():
                break
            data = message.get("bytes")
            text = message.get("text") or ""
            kind = None if data is not None else _control(text)
            if kind != "stop" and not run.messages.take():
                # Many tiny messages cost as much as many frames: they count as a flood.
                await self._flooded(run)
                continue
            if data is not None:
                await self._feed(run, data, received_ms=contract.now_ms())
                continue
            if kind is None:
                raise _Refused(
                    "invalid_message",
                    "알 수 없는 메시지입니다. 오디오나 pause, resume, stop만 보낼 수 있습니다.",
                    f"Unknown message; send audio, or pause, resume or stop ({text[:40]!r}).",
                )
            if kind == "stop":
                await self._end(run, EndReason.STOPPED, "stopped")
            elif kind == "pause":
                # Each pause goes to every speaker at QoS 1: a client toggling fast is not
                # repeated to them; if it stays silent, `_watch` pauses them in time.
                if not run.paused and run.controls.take():
                    await self._pause(run)
            else:
                run.paused = False
                run.heard = time.monotonic()
        if run.ending is not None:
            # Ended elsewhere (a suspension, idle, the longest talk) while the client was still
            # sending: the ending tells it why and closes the socket with the matching code.
            # Closing here first would hang up with 1000 and no reason.
            with contextlib.suppress(Exception):
                await asyncio.shield(run.ending)
        with contextlib.suppress(Exception):
            await websocket.close(1000)

    # -- frames -------------------------------------------------------------------------

    async def _feed(self, run: _Run, data: bytes, *, received_ms: int) -> None:
        limit = MAX_MESSAGE_BYTES[run.input_format]
        if len(data) > limit:
            await self._invalid(
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
            await self._invalid(
                run,
                "not_audio",
                "알린 형식의 오디오가 아닙니다. 이 메시지는 버려졌습니다.",
                f"Not {run.input_format} audio ({exc}); it was dropped.",
            )
            return
        for packet in packets:
            if run.ended.is_set():
                return  # ended meanwhile (elsewhere): nothing may follow the END frame
            if not run.frames_bucket.take():
                run.dropped += 1
                await self._flooded(run)
                continue
            frame = LiveFrame(
                kind=LiveKind.AUDIO,
                flags=contract.LIVE_START_FLAG if run.spurt else 0,
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
                await self._bus.publish(
                    run.opened.topics,
                    contract.encode_live_frame(frame, run.key),
                    qos=contract.LIVE_FRAME_QOS,
                )
            except FanoutUnavailable:
                run.dropped += 1

    async def _invalid(self, run: _Run, code: str, ko: str, en: str) -> None:
        """A message that cannot be used: the client is told; too many end the session."""
        run.invalid += 1
        if run.invalid > self._live.invalid_limit:
            raise _Refused(
                "not_audio",
                "오디오가 아닌 데이터를 너무 많이 보내 방송을 끝냈습니다.",
                f"Too many messages that are not audio in the announced format ({code}).",
            )
        await self._send(run, _warning(code, ko, en))

    async def _flooded(self, run: _Run) -> None:
        """Audio (or messages) ahead of real time beyond the burst: dropped; too many end it."""
        run.flooded += 1
        if run.flooded > self._live.flood_limit:
            raise _Refused(
                "live_flood",
                "실시간보다 빠르게 너무 많은 오디오를 보내 방송을 끝냈습니다.",
                "Audio arrived much faster than real time; the session was ended.",
            )
        if run.flooded == 1 or run.flooded % 50 == 0:
            await self._send(
                run,
                _warning(
                    "live_flood",
                    "실시간보다 빠르게 보낸 오디오는 버립니다.",
                    "Audio ahead of real time beyond the allowed burst is dropped.",
                ),
            )

    async def _control(self, run: _Run, kind: LiveKind, flags: int = 0) -> None:
        frame = LiveFrame(
            kind=kind,
            flags=flags,
            session=run.broadcast_id,
            seq=max(0, run.seq - 1),
            at_ms=contract.now_ms(),
        )
        with contextlib.suppress(FanoutUnavailable):
            await self._bus.publish(
                run.opened.topics,
                contract.encode_live_frame(frame, run.key),
                qos=contract.LIVE_CONTROL_QOS,
            )

    async def _pause(self, run: _Run) -> None:
        run.heard = time.monotonic()
        if not run.paused:
            run.paused, run.spurt = True, True
            await self._control(run, LiveKind.PAUSE)

    async def _orphan(self, run: _Run) -> None:
        """The client vanished: speakers hold while it may come back, then the session ends."""
        loop = asyncio.get_running_loop()

        def expire() -> None:
            run.grace = None
            if not run.attached and not run.ended.is_set():
                self._end(run, EndReason.CLIENT_LOST, "client_lost")

        run.grace = loop.call_later(self._live.grace_s, expire)
        with contextlib.suppress(Exception):
            await self._pause(run)

    def _end(self, run: _Run, reason: EndReason, label: str) -> asyncio.Future[None]:
        """End the session once, whoever asks first; await the result to know it is over.

        The ending runs in its own task: a caller cancelled meanwhile (its socket closed, the
        gateway stopping) does not leave the session half ended.
        """
        if run.ending is None:
            run.ended.set()
            run.end_reason = label
            if run.grace is not None:
                run.grace.cancel()
                run.grace = None
            for task in run.tasks:
                task.cancel()
            run.ending = self._spawn(
                self._finish(run, reason, label), f"live-end-{run.broadcast_id}"
            )
        return asyncio.shield(run.ending)

    async def _finish(self, run: _Run, reason: EndReason, label: str) -> None:
        recording = None
        try:
            with contextlib.suppress(Exception):
                await self._control(run, LiveKind.END, int(reason))
            try:
                recording = await asyncio.to_thread(run.recorder.finish)
            except Exception:
                log.exception("live recording of %s could not be kept", run.broadcast_id)
            await self._record_end(run, label, recording)
        finally:
            self._runs.pop(run.broadcast_id, None)
        log.info(
            "live session %s ended (%s): %d frames, %d dropped",
            run.broadcast_id,
            label,
            run.frames,
            run.dropped,
        )
        if run.recorder.truncated:
            log.warning(
                "live session %s: the recording was cut at %d bytes",
                run.broadcast_id,
                run.recorder.size,
            )
        if run.socket is not None:
            imposed = _IMPOSED.get(label)
            ended: dict[str, Any] = {
                "type": "ended",
                "broadcast_id": run.broadcast_id,
                "reason": label,
                "frames": run.frames,
                "dropped": run.dropped,
                "recording_sha256": recording.sha256 if recording else None,
                "duration_ms": recording.duration_ms if recording else 0,
            }
            if imposed is not None:
                ended["detail"] = " / ".join(imposed)
            with contextlib.suppress(Exception):
                await run.socket.send_json(ended)
                if imposed is not None:
                    await run.socket.close(POLICY_VIOLATION, label)
                else:
                    await run.socket.close(1000)

    async def _record_end(self, run: _Run, label: str, recording: Recording | None) -> None:
        for attempt in range(1, _END_ATTEMPTS + 1):
            try:
                async with self._sessions() as session:
                    await service.close_session(
                        session,
                        run.broadcast_id,
                        self._runtime.clock.now(),
                        reason=label,
                        recording=recording,
                        frames=run.frames,
                        dropped=run.dropped,
                    )
                    await session.commit()
                return
            except Exception:
                if attempt == _END_ATTEMPTS:
                    # Not renewed any more: another replica's sweep, or this one's, ends it.
                    log.exception(
                        "live session %s could not be ended in the record", run.broadcast_id
                    )
                    return
                log.warning("ending live session %s failed; retrying", run.broadcast_id)
                await asyncio.sleep(0.5 * attempt)

    # -- background work of one session --------------------------------------------------

    async def _announce_ready(self, run: _Run) -> None:
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                while True:
                    if await self._start_published(run):
                        break
                    await asyncio.sleep(0.05)
        except TimeoutError:
            await self._send(
                run,
                _error(
                    "live_not_started",
                    "스피커에 방송 시작을 보내지 못해 방송을 끝냈습니다.",
                    "The start command could not be sent to the speakers; the session ended.",
                ),
            )
            self._end(run, EndReason.FAILED, "live_not_started")
            return
        await asyncio.sleep(run.chime_ms / 1000 + _READY_MARGIN_S)
        await self._send(run, {"type": "ready"})

    async def _start_published(self, run: _Run) -> bool:
        try:
            async with self._sessions() as session:
                return await service.start_published(session, run.broadcast_id)
        except Exception:
            log.warning("live session %s: reading its start failed", run.broadcast_id)
            return False

    async def _report(self, run: _Run) -> None:
        """Status to the client every second; the record renewed every few seconds."""
        last_alive = time.monotonic()
        while True:
            await asyncio.sleep(_STATUS_EVERY_S)
            now = self._runtime.clock.now()
            imposed: str | None = None
            try:
                async with self._sessions() as session:
                    counts = await service.speaker_counts(session, run.broadcast_id)
                    # Ended from outside (its speaker's account suspended), from any replica:
                    # looked for every second, so it ends as soon as the suspension commits.
                    imposed = await service.end_requested(session, run.broadcast_id)
                    if imposed is None and time.monotonic() - last_alive >= _ALIVE_EVERY_S:
                        still_open = await service.keep_alive(
                            session, run.broadcast_id, now, frames=run.frames, dropped=run.dropped
                        )
                        await session.commit()
                        last_alive = time.monotonic()
                        if not still_open:
                            # Ended by another replica's sweep while the database was away.
                            self._end(run, EndReason.FAILED, "session_lost")
                            return
            except Exception:
                # A database hiccup must not stop the renewals: an unrenewed session looks dead.
                log.warning("live session %s: status update failed", run.broadcast_id)
                continue
            if imposed is not None:
                # What was said has played: the speakers end it as stopped, not as a failure.
                self._end(run, EndReason.STOPPED, imposed)
                return
            await self._send(run, _status(run, counts, now))

    async def _watch(self, run: _Run) -> None:
        """Silence from a connected client: pause the speakers before they stall, end the
        session before they give up, and end it at the longest allowed talk."""
        stall_s = self._live.stall_ms / 1000
        idle_s = max(self._live.idle_s - 1.0, self._live.idle_s / 2)
        tick = min(0.25, stall_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - run.started >= self._live.max_s:
                self._end(run, EndReason.STOPPED, "max_duration")
                return
            quiet = now - run.heard
            if not run.paused and run.frames and quiet >= stall_s / 2:
                await self._pause(run)
                run.heard = now - quiet  # pausing is not talking: the idle clock runs on
            elif (run.paused or not run.frames) and quiet >= idle_s:
                reason = EndReason.STOPPED if run.frames else EndReason.CLIENT_LOST
                self._end(run, reason, "idle")
                return

    async def _send(self, run: _Run, message: dict[str, Any]) -> None:
        if run.socket is not None:
            with contextlib.suppress(Exception):
                await run.socket.send_json(message)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_EVERY_S)
            await self._close_stale()

    async def _close_stale(self) -> None:
        """End open sessions of this city whose replica stopped renewing them (it died, or was
        restarted under a new replica id)."""
        try:
            async with self._sessions() as session:
                closed = await service.close_stale(
                    session, self._city_id, self._runtime.clock.now(), keep=set(self._runs)
                )
                await session.commit()
        except Exception:
            log.warning("looking for abandoned live sessions failed")
            return
        if closed:
            log.warning("%d live session(s) of a stopped replica were ended", closed)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("live task %s failed: %r", task.get_name(), task.exception())

    async def _chime(self, category: str) -> Encoded:
        async with self._chime_lock:
            found = self._chimes.get(category)
            if found is None:
                found = await asyncio.to_thread(_encode_chime, category, self._runtime)
                self._chimes[category] = found
            return found


def _encode_chime(category: str, runtime: Runtime) -> Encoded:
    options = AudioOptions(
        target_lufs=runtime.settings.target_lufs, opus_bitrate=runtime.settings.opus_bitrate
    )
    samples = chime(
        "start",
        category,
        rate=options.sample_rate,
        target_lufs=options.target_lufs,
        peak_dbtp=options.true_peak_dbtp,
    )
    return encode(samples, "opus", options)


def _control(text: str) -> str | None:
    if len(text) > _MAX_TEXT_CHARS:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if kind in ("pause", "resume", "stop") else None


def _status(run: _Run, counts: dict[str, int], now: datetime) -> dict[str, Any]:
    return {
        "type": "status",
        "speakers": counts.get("total", 0),
        "playing": counts.get("playing", 0),
        "played": counts.get("played", 0),
        "waiting": counts.get("received", 0) + counts.get("preempted", 0),
        "offline": counts.get("offline", 0),
        "frames": run.frames,
        "dropped": run.dropped,
        "paused": run.paused,
        "at": now.isoformat(),
    }


def _warning(code: str, ko: str, en: str) -> dict[str, Any]:
    """A message that was dropped; the session goes on."""
    return {"type": "warning", "error": code, "detail": f"{ko} / {en}"}


def _error(code: str, ko: str, en: str) -> dict[str, Any]:
    return {"type": "error", "error": code, "detail": f"{ko} / {en}"}


def _started(run: _Run) -> dict[str, Any]:
    return {
        "type": "started",
        "broadcast_id": run.broadcast_id,
        "speakers": run.opened.speakers,
        "chime_ms": run.chime_ms,
        "priority": run.opened.priority,
    }


def _not_found() -> NotFound:
    return NotFound(
        "live_not_found",
        ko="이어서 할 실시간 방송이 없습니다.",
        en="There is no live session of yours to resume.",
    )


async def _refuse(
    websocket: WebSocket, code: str, *detail: str, close_code: int = POLICY_VIOLATION
) -> None:
    text = " / ".join(detail)
    with contextlib.suppress(Exception):
        await websocket.send_json({"type": "error", "error": code, "detail": text})
    with contextlib.suppress(Exception):
        await websocket.close(close_code, code)
