"""This replica's live sessions: tickets, the talking client's WebSocket, and the ending.

One `LiveHub` per app, owned by its lifespan. A session lives here while it is spoken; its
record (`gateway.live.service`) is written in short transactions: at the start, now and then
while it runs (`gateway.live.upkeep`), and at the end. No database session lives as long as a
WebSocket. The messages on the socket are in `gateway.live.messages`; the audio's way to the
speakers in `gateway.live.frames`.

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
import logging
import secrets
import time
from collections.abc import Callable
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
from gateway.live import frames, messages, service, upkeep
from gateway.live.fanout import LiveBus
from gateway.live.ingest import make_ingest
from gateway.live.messages import INTERNAL_ERROR, POLICY_VIOLATION
from gateway.live.recorder import Recorder
from gateway.live.runs import FRAME_MS, Bucket, Refused, Run, Ticket
from gateway.live.schemas import TicketCreate, TicketRead
from gateway.live.settings import LiveSettings
from gateway.places.models import City
from gateway.users import logins, standing
from wire import contract
from wire.contract import EndReason, LiveKind

log = logging.getLogger(__name__)

# Unused tickets one person may hold at once.
_TICKETS_PER_ACTOR: Final = 5
# How often open sessions whose replica stopped renewing them are looked for.
_SWEEP_EVERY_S: Final = 10.0


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
        self._tickets: dict[str, Ticket] = {}
        self._runs: dict[str, Run] = {}
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
            await asyncio.wait(endings, timeout=upkeep.END_ATTEMPTS * 5.0)
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
        self._tickets[token] = Ticket(
            principal=principal,
            request=request,
            input_format=body.format,
            rate=body.sample_rate,
            resume=body.resume,
            expires_at=time.monotonic() + self._live.ticket_ttl_s,
            stamped=body.stamped,
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

    def _take_ticket(self, token: str) -> Ticket:
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
        run: Run | None = None
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
            await messages.refuse(websocket, exc.code, exc.detail)
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
                await websocket.send_json(messages.started(run))
            await self._talk(websocket, run)
        except (MaeulError, Refused) as exc:
            if run is not None and run.socket is websocket:
                # Ended in the record first: the client may try again as soon as it is told.
                run.socket, run.attached = None, False
                await self._end(run, EndReason.FAILED, exc.code)
            await messages.refuse(websocket, exc.code, exc.detail)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("live session failed")
            if run is not None and run.socket is websocket:
                run.socket, run.attached = None, False
                await self._end(run, EndReason.FAILED, "gateway_error")
            await messages.refuse(
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

    async def _open(self, websocket: WebSocket, ticket: Ticket) -> Run:
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
                    account = await standing.account_state(session, request.principal.actor)
                    if account not in ("active", "system"):
                        raise logins.account_suspended()
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
        run = Run(
            opened=opened,
            actor=ticket.principal.actor,
            key=opened.stream.key_bytes(),
            ingest=ingest,
            input_format=ticket.input_format,
            chime_ms=encoded.duration_ms,
            recorder=Recorder(max_ms=self._live.max_s * 1000 + self._live.burst_ms),
            frames_bucket=Bucket(1000 / FRAME_MS, self._live.burst_ms / FRAME_MS),
            socket=websocket,
            stamped=ticket.stamped,
        )
        self._runs[run.broadcast_id] = run
        name, end, sessions = run.broadcast_id, self._end, self._sessions
        run.tasks += [
            self._spawn(
                upkeep.announce_ready(
                    sessions, run, end, lead_ms=self._runtime.settings.play_lead_ms
                ),
                f"live-ready-{name}",
            ),
            self._spawn(upkeep.report(sessions, self._runtime, run, end), f"live-status-{name}"),
            self._spawn(upkeep.watch(self._bus, self._live, run, end), f"live-watch-{name}"),
        ]
        self._wake()
        return run

    def _resume(self, ticket: Ticket) -> Run:
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
        run.stamped = ticket.stamped
        run.heard = time.monotonic()
        return run

    async def _talk(self, websocket: WebSocket, run: Run) -> None:
        while not run.ended.is_set():
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if run.ended.is_set():
                break
            data = message.get("bytes")
            text = message.get("text") or ""
            kind = None if data is not None else messages.read_control(text)
            if kind != "stop" and not run.messages.take():
                # Many tiny messages cost as much as many frames: they count as a flood.
                await frames.flooded(self._live, run)
                continue
            if data is not None:
                await frames.feed(self._bus, self._live, run, data, received_ms=contract.now_ms())
                continue
            if kind is None and (stamp := messages.read_clock(text)) is not None:
                await websocket.send_json(messages.clock(stamp, contract.now_ms()))
                continue
            if kind is None:
                raise Refused(
                    "invalid_message",
                    "알 수 없는 메시지입니다. 오디오나 pause, resume, stop, clock만 "
                    "보낼 수 있습니다.",
                    "Unknown message; send audio, or pause, resume, stop or clock "
                    f"({text[:40]!r}).",
                )
            if kind == "stop":
                await self._end(run, EndReason.STOPPED, "stopped")
            elif kind == "pause":
                # Each pause goes to every speaker at QoS 1: a client toggling fast is not
                # repeated to them; if it stays silent, `upkeep.watch` pauses them in time.
                if not run.paused and run.controls.take():
                    await frames.pause(self._bus, run)
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

    async def _orphan(self, run: Run) -> None:
        """The client vanished: speakers hold while it may come back, then the session ends."""
        loop = asyncio.get_running_loop()

        def expire() -> None:
            run.grace = None
            if not run.attached and not run.ended.is_set():
                self._end(run, EndReason.CLIENT_LOST, "client_lost")

        run.grace = loop.call_later(self._live.grace_s, expire)
        with contextlib.suppress(Exception):
            await frames.pause(self._bus, run)

    def _end(self, run: Run, reason: EndReason, label: str) -> asyncio.Future[None]:
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

    async def _finish(self, run: Run, reason: EndReason, label: str) -> None:
        recording = None
        try:
            with contextlib.suppress(Exception):
                await frames.control(self._bus, run, LiveKind.END, int(reason))
            try:
                recording = await asyncio.to_thread(run.recorder.finish)
            except Exception:
                log.exception("live recording of %s could not be kept", run.broadcast_id)
            await upkeep.record_end(self._sessions, self._runtime, run, label, recording)
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
            with contextlib.suppress(Exception):
                await run.socket.send_json(messages.ended(run, label, recording))
                if label in messages.IMPOSED:
                    await run.socket.close(POLICY_VIOLATION, label)
                else:
                    await run.socket.close(1000)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_EVERY_S)
            await self._close_stale()

    async def _close_stale(self) -> None:
        await upkeep.close_stale(self._sessions, self._runtime, self._city_id, keep=set(self._runs))

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


def _not_found() -> NotFound:
    return NotFound(
        "live_not_found",
        ko="이어서 할 실시간 방송이 없습니다.",
        en="There is no live session of yours to resume.",
    )
