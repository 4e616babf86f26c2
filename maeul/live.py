"""`maeul live`: speak a file to the speakers in real time, as if it were said into a microphone.

For tests and operators: the file is decoded and cut into 20 ms Opus packets first, then sent
over the live WebSocket paced by the clock, after the start chime has played. Each packet is
stamped with when it was handed over, as a microphone would hand it, on the gateway's clock
(measured with the socket's ``clock`` messages), so that speakers report mouth to horn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
import typer
import websockets

FRAME_S: Final = 0.02
# How far behind its schedule a paced sender may catch up in one burst (the gateway allows
# 600 ms ahead of real time by default).
CATCH_UP_S: Final = 0.2
# Clock exchanges at the start of a session: the one with the shortest round trip is kept.
CLOCK_EXCHANGES: Final = 5
_STAMP: Final = struct.Struct(">Q")


def wall_ms() -> float:
    return time.time() * 1000


class LiveError(Exception):
    """The gateway refused the session or broke it off."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def opus_packets(path: Path, *, bitrate: int = 24_000) -> list[bytes]:
    """The file's audio as 20 ms mono Opus packets (blocking)."""
    import numpy as np

    from audio.decode import Limits, decode_file
    from gateway.live.ingest import PcmIngest

    limits = Limits(max_bytes=64 * 1024 * 1024, max_duration_s=4 * 3600.0, timeout_s=120.0)
    _, samples = decode_file(path, limits, 16000)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    return PcmIngest(16000, bitrate).feed(pcm.tobytes())


def clock_offset(exchanges: Sequence[tuple[float, float, float]]) -> float | None:
    """The gateway's clock minus this one, from (sent, gateway's time, answered) exchanges:
    the one with the shortest round trip, its gateway time taken as halfway through."""
    if not exchanges:
        return None
    sent, server, answered = min(exchanges, key=lambda e: e[2] - e[0])
    return server - (sent + answered) / 2


class LiveClient:
    """One talking client: a ticket over HTTP, then the WebSocket. `stamped`: its audio says
    when it was captured (`send_audio`, `send_paced`)."""

    def __init__(self, base_url: str, token: str, *, stamped: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.stamped = stamped
        self.offset_ms = 0.0  # the gateway's clock minus this one, once measured
        self.events: list[dict[str, Any]] = []
        self.broadcast_id: str | None = None
        self._socket: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def ticket(self, body: dict[str, Any]) -> str:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as client:
            response = await client.post(
                "/api/v1/live/tickets",
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        if response.status_code != 201:
            error = response.json() if response.content else {}
            raise LiveError(str(error.get("error", response.status_code)), error.get("detail", ""))
        return str(response.json()["url"])

    async def open(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start a session; returns the gateway's ``started`` message."""
        path = await self.ticket({**body, "stamped": self.stamped})
        url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self._socket = await websockets.connect(url + path, max_size=1 << 20)
        self._reader = asyncio.create_task(self._read(), name="live-client")
        started = await self.wait_for("started", 30)
        self.broadcast_id = started["broadcast_id"]
        if self.stamped:
            await self.measure_clock()
        return started

    async def measure_clock(self, exchanges: int = CLOCK_EXCHANGES) -> float:
        """Estimate the gateway's clock against this one (`offset_ms`)."""
        found: list[tuple[float, float, float]] = []
        for _ in range(exchanges):
            sent = wall_ms()
            await self._socket.send(json.dumps({"type": "clock", "t": sent}))
            answer = await self._answer_to(sent, 10)
            found.append((sent, float(answer["server_ms"]), wall_ms()))
        offset = clock_offset(found)
        self.offset_ms = offset if offset is not None else 0.0
        return self.offset_ms

    async def _answer_to(self, sent: float, within: float) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if event.get("type") == "clock" and event.get("t") == sent:
                        return event
                    if event.get("type") in ("error", "closed"):
                        raise LiveError(str(event.get("error", "closed")), "no clock answer")
                self._changed.clear()
                await self._changed.wait()

    def stamp(self, data: bytes) -> bytes:
        """`data` as a stamped client sends it: captured until now, on the gateway's clock."""
        if not self.stamped:
            return data
        return _STAMP.pack(round(wall_ms() + self.offset_ms)) + data

    async def _read(self) -> None:
        try:
            async for message in self._socket:
                if isinstance(message, str):
                    self.events.append(json.loads(message))
                    self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.events.append({"type": "closed"})
            self._changed.set()

    async def wait_for(self, kind: str, within: float) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if event.get("type") == kind:
                        return event
                    if event.get("type") == "error":
                        raise LiveError(event["error"], event.get("detail", ""))
                    if event.get("type") == "closed" and kind != "closed":
                        raise LiveError("closed", "the gateway closed the connection")
                self._changed.clear()
                await self._changed.wait()

    def latest(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e.get("type") == kind), None)

    async def send_paced(
        self, packets: Sequence[bytes], *, on_sent: Callable[[int], None] | None = None
    ) -> None:
        """Send one packet every 20 ms on an absolute schedule (no drift). After a stall (a busy
        machine) it resumes the pace from where it is, catching up at most ``CATCH_UP_S``: a
        longer burst would be audio ahead of real time, which the gateway drops and, past its
        allowance, ends the session for (``live_flood``)."""
        start = time.monotonic()
        for index, packet in enumerate(packets):
            delay = start + index * FRAME_S - time.monotonic()
            if delay < -CATCH_UP_S:
                start -= delay + CATCH_UP_S
            elif delay > 0:
                await asyncio.sleep(delay)
            await self._socket.send(self.stamp(packet))
            if on_sent is not None:
                on_sent(index)

    async def send(self, data: bytes | str) -> None:
        """Send as it is (no stamp): for tests of what the gateway does with bad messages."""
        await self._socket.send(data)

    async def send_audio(self, data: bytes) -> None:
        await self._socket.send(self.stamp(data))

    async def control(self, kind: str) -> None:
        await self._socket.send(json.dumps({"type": kind}))

    async def stop(self, within: float = 30) -> dict[str, Any]:
        await self.control("stop")
        return await self.wait_for("ended", within)

    async def vanish(self) -> None:
        """Lose the connection without a goodbye, as a phone leaving coverage would."""
        transport = getattr(self._socket, "transport", None)
        if transport is not None:
            transport.abort()
        await self.close()

    async def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 5)


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


async def speak_file(
    base_url: str,
    token: str,
    path: Path,
    body: dict[str, Any],
    *,
    out: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Speak a file live and return the gateway's ``ended`` message."""
    if out is None:
        out = _to_stderr
    packets = await asyncio.to_thread(opus_packets, path)
    client = LiveClient(base_url, token, stamped=True)
    try:
        started = await client.open({**body, "format": "opus"})
        out(
            f"실시간 방송 시작 {started['broadcast_id']}: 스피커 {started['speakers']}대 / "
            f"live broadcast started to {started['speakers']} speakers"
        )
        await client.wait_for("ready", 60)
        out(f"말하는 중 ({len(packets) * FRAME_S:.1f}초) / speaking")
        await client.send_paced(packets)
        ended = await client.stop()
        status = client.latest("status") or {}
        out(
            f"끝: 재생 중 {status.get('playing', 0)}대, 완료 {status.get('played', 0)}대, "
            f"프레임 {ended['frames']} / ended ({ended['reason']})"
        )
        return ended
    finally:
        await client.close()


CATEGORIES: Final = ("village_notice", "administrative", "crime_prevention", "disaster")


def live(
    file: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="Audio file to speak in real time")
    ],
    village: Annotated[list[int] | None, typer.Option(help="Village id (repeatable)")] = None,
    district: Annotated[list[int] | None, typer.Option(help="District id (repeatable)")] = None,
    category: Annotated[str, typer.Option(help="|".join(CATEGORIES))] = "village_notice",
    title: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the end as one JSON object")
    ] = False,
) -> None:
    """Speak a file live to villages or districts, in real time, as if into a microphone."""
    from maeul import credentials

    if bool(village) == bool(district):
        typer.echo(
            "--village 또는 --district 중 하나로 대상을 지정하세요. / "
            "Give --village or --district (not both).",
            err=True,
        )
        raise typer.Exit(2)
    if category not in CATEGORIES:
        typer.echo(f"알 수 없는 분류입니다. / Unknown category: {category}", err=True)
        raise typer.Exit(2)
    url, token = credentials.resolve()
    body: dict[str, Any] = {
        "category": category,
        "village_ids": list(village or []),
        "district_ids": list(district or []),
    }
    if title:
        body["title"] = title
    try:
        ended = asyncio.run(speak_file(url, token, file, body))
    except LiveError as exc:
        typer.echo(
            json.dumps({"error": exc.code, "detail": exc.detail}, ensure_ascii=False), err=True
        )
        raise typer.Exit(2) from exc
    except (httpx.HTTPError, OSError, websockets.WebSocketException) as exc:
        typer.echo(f"게이트웨이에 연결할 수 없습니다. / Cannot reach the gateway: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(ended, ensure_ascii=False))
    else:
        typer.echo(
            f"방송 {ended['broadcast_id']}: {ended['reason']}, "
            f"{ended.get('duration_ms', 0) / 1000:.1f}초 녹음 보관 / recording kept"
        )
    if ended.get("reason") != "stopped":
        raise typer.Exit(1)
