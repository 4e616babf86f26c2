"""The background work of a session on air, and its record across replicas.

While a session runs, this replica tells the client when to talk (the start command published
and the chime played), reports the speakers' progress every second, renews the session's
``alive_at`` so other replicas know it lives, looks for an ending imposed from any replica, and
pauses or ends a session whose client has gone silent. At the end it writes the ending, and it
ends sessions a stopped replica left open. Each step opens a short transaction of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.deps import Runtime
from gateway.live import frames, messages, service
from gateway.live.fanout import LiveBus
from gateway.live.recorder import Recording
from gateway.live.runs import End, Run
from gateway.live.settings import LiveSettings
from wire.contract import EndReason

log = logging.getLogger(__name__)

_STATUS_EVERY_S: Final = 1.0
_ALIVE_EVERY_S: Final = 5.0
# After the start command is published, the time for it to reach the speakers on top of the chime.
_READY_MARGIN_S: Final = 0.15
# The outbox has this long to publish the start command before the session is given up.
_START_TIMEOUT_S: Final = 30.0
# Ending a session in the record is tried this often before it is left to `close_stale`.
END_ATTEMPTS: Final = 3


async def announce_ready(
    sessions: async_sessionmaker[AsyncSession], run: Run, end: End, *, lead_ms: int = 0
) -> None:
    """Tell the client to talk once the speakers have played the chime: they start it at the
    command's play-at time, `lead_ms` after it was published."""
    try:
        async with asyncio.timeout(_START_TIMEOUT_S):
            while True:
                if await _start_published(sessions, run):
                    break
                await asyncio.sleep(0.05)
    except TimeoutError:
        await messages.send(
            run,
            messages.error(
                "live_not_started",
                "스피커에 방송 시작을 보내지 못해 방송을 끝냈습니다.",
                "The start command could not be sent to the speakers; the session ended.",
            ),
        )
        end(run, EndReason.FAILED, "live_not_started")
        return
    await asyncio.sleep((lead_ms + run.chime_ms) / 1000 + _READY_MARGIN_S)
    await messages.send(run, {"type": "ready"})


async def _start_published(sessions: async_sessionmaker[AsyncSession], run: Run) -> bool:
    try:
        async with sessions() as session:
            return await service.start_published(session, run.broadcast_id)
    except Exception:
        log.warning("live session %s: reading its start failed", run.broadcast_id)
        return False


async def report(
    sessions: async_sessionmaker[AsyncSession], runtime: Runtime, run: Run, end: End
) -> None:
    """Status to the client every second; the record renewed every few seconds."""
    last_alive = time.monotonic()
    while True:
        await asyncio.sleep(_STATUS_EVERY_S)
        now = runtime.clock.now()
        imposed: str | None = None
        try:
            async with sessions() as session:
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
                        end(run, EndReason.FAILED, "session_lost")
                        return
        except Exception:
            # A database hiccup must not stop the renewals: an unrenewed session looks dead.
            log.warning("live session %s: status update failed", run.broadcast_id)
            continue
        if imposed is not None:
            # What was said has played: the speakers end it as stopped, not as a failure.
            end(run, EndReason.STOPPED, imposed)
            return
        await messages.send(run, messages.status(run, counts, now))


async def watch(bus: LiveBus, live: LiveSettings, run: Run, end: End) -> None:
    """Silence from a connected client: pause the speakers before they stall, end the
    session before they give up, and end it at the longest allowed talk."""
    stall_s = live.stall_ms / 1000
    idle_s = max(live.idle_s - 1.0, live.idle_s / 2)
    tick = min(0.25, stall_s / 4)
    while True:
        await asyncio.sleep(tick)
        now = time.monotonic()
        if now - run.started >= live.max_s:
            end(run, EndReason.STOPPED, "max_duration")
            return
        quiet = now - run.heard
        if not run.paused and run.frames and quiet >= stall_s / 2:
            await frames.pause(bus, run)
            run.heard = now - quiet  # pausing is not talking: the idle clock runs on
        elif (run.paused or not run.frames) and quiet >= idle_s:
            reason = EndReason.STOPPED if run.frames else EndReason.CLIENT_LOST
            end(run, reason, "idle")
            return


async def record_end(
    sessions: async_sessionmaker[AsyncSession],
    runtime: Runtime,
    run: Run,
    label: str,
    recording: Recording | None,
) -> None:
    for attempt in range(1, END_ATTEMPTS + 1):
        try:
            async with sessions() as session:
                await service.close_session(
                    session,
                    run.broadcast_id,
                    runtime.clock.now(),
                    reason=label,
                    recording=recording,
                    frames=run.frames,
                    dropped=run.dropped,
                )
                await session.commit()
            return
        except Exception:
            if attempt == END_ATTEMPTS:
                # Not renewed any more: another replica's sweep, or this one's, ends it.
                log.exception("live session %s could not be ended in the record", run.broadcast_id)
                return
            log.warning("ending live session %s failed; retrying", run.broadcast_id)
            await asyncio.sleep(0.5 * attempt)


async def close_stale(
    sessions: async_sessionmaker[AsyncSession],
    runtime: Runtime,
    city_id: int,
    *,
    keep: set[str],
) -> None:
    """End open sessions of this city whose replica stopped renewing them (it died, or was
    restarted under a new replica id)."""
    try:
        async with sessions() as session:
            closed = await service.close_stale(session, city_id, runtime.clock.now(), keep=keep)
            await session.commit()
    except Exception:
        log.warning("looking for abandoned live sessions failed")
        return
    if closed:
        log.warning("%d live session(s) of a stopped replica were ended", closed)
