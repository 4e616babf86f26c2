"""The live WebSocket's JSON messages: reading the client's controls, and what the gateway says.

The protocol (JSON text both ways, audio as binary messages from the client)::

    client                                  gateway
    (connect with ?ticket=...)      ─────▶
    {"type": "clock", "t": T}       ─────▶  any time, a few times: the client's clock (ms)
                                    ◀─────  {"type": "clock", "t": T, "server_ms": S}
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

The clock exchange lets a client that stamps its audio (`TicketCreate.stamped`) put the stamps
on the gateway's clock: with ``T1`` its clock when the answer came, the gateway's clock is
ahead of the client's by ``S - (T + T1) / 2``, within half the round trip; of a few exchanges
the one with the shortest round trip is the best. Send them after ``started``: until then the
gateway is opening the session and answers late, which only lengthens those round trips.
"""

from __future__ import annotations

import contextlib
import json
import math
from datetime import datetime
from typing import Any, Final

from fastapi import WebSocket

from gateway.live.recorder import Recording
from gateway.live.runs import Run

POLICY_VIOLATION: Final = 1008
INTERNAL_ERROR: Final = 1011
_MAX_TEXT_CHARS: Final = 256
# Endings imposed from outside the talking client (its account was suspended): the client is
# told why in words, and the socket closes as a policy decision (1008) naming the reason.
IMPOSED: Final = {
    "owner_suspended": (
        "계정이 정지되어 실시간 방송을 끝냈습니다. 시청 관리자에게 문의해 주세요.",
        "Your account was suspended; the live session was ended.",
    ),
    "owner_removed": (
        "계정이 없어져 실시간 방송을 끝냈습니다.",
        "Your account no longer exists; the live session was ended.",
    ),
}


def read_control(text: str) -> str | None:
    body = _read(text)
    kind = body.get("type") if body is not None else None
    return kind if kind in ("pause", "resume", "stop") else None


def read_clock(text: str) -> int | float | None:
    """The client's time in a ``clock`` message (None: not one)."""
    body = _read(text)
    if body is None or body.get("type") != "clock":
        return None
    stamp = body.get("t")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
        return None
    return stamp


def clock(stamp: int | float, server_ms: int) -> dict[str, Any]:
    return {"type": "clock", "t": stamp, "server_ms": server_ms}


def _read(text: str) -> dict[str, Any] | None:
    if len(text) > _MAX_TEXT_CHARS:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def status(run: Run, counts: dict[str, int], now: datetime) -> dict[str, Any]:
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


def warning(code: str, ko: str, en: str) -> dict[str, Any]:
    """A message that was dropped; the session goes on."""
    return {"type": "warning", "error": code, "detail": f"{ko} / {en}"}


def error(code: str, ko: str, en: str) -> dict[str, Any]:
    return {"type": "error", "error": code, "detail": f"{ko} / {en}"}


def started(run: Run) -> dict[str, Any]:
    return {
        "type": "started",
        "broadcast_id": run.broadcast_id,
        "speakers": run.opened.speakers,
        "chime_ms": run.chime_ms,
        "priority": run.opened.priority,
    }


def ended(run: Run, label: str, recording: Recording | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "ended",
        "broadcast_id": run.broadcast_id,
        "reason": label,
        "frames": run.frames,
        "dropped": run.dropped,
        "recording_sha256": recording.sha256 if recording else None,
        "duration_ms": recording.duration_ms if recording else 0,
    }
    imposed = IMPOSED.get(label)
    if imposed is not None:
        message["detail"] = " / ".join(imposed)
    return message


async def send(run: Run, message: dict[str, Any]) -> None:
    """To the talking client when one is connected; a broken socket is noticed by its reader."""
    if run.socket is not None:
        with contextlib.suppress(Exception):
            await run.socket.send_json(message)


async def refuse(
    websocket: WebSocket, code: str, *detail: str, close_code: int = POLICY_VIOLATION
) -> None:
    text = " / ".join(detail)
    with contextlib.suppress(Exception):
        await websocket.send_json({"type": "error", "error": code, "detail": text})
    with contextlib.suppress(Exception):
        await websocket.close(close_code, code)
