"""Live latency: mouth-to-speaker, from the moment a frame reaches the gateway to the moment a
speaker would play it (its jitter-buffer slot), with a city's worth of listeners.

A talking client streams a recording in real time (20 ms Opus packets, paced by the clock) over
the live WebSocket to every village. Each listener is its own MQTT connection subscribed to the
city's live topic, as a speaker is; it notes when each frame arrives. Afterwards every listener's
arrivals go through the speakers' own jitter buffer (`devices.live.JitterBuffer`, the configured
target): the latency of a frame is its playout slot minus its ``at_ms`` (stamped by the gateway
on receipt, same machine clock); a frame that never came or came after its slot is lost.

The listeners are `mosquitto_sub` processes when the binary is there: 358 Python speakers in one
process cannot take 17,900 frames a second on two cores, and would measure themselves. Without
it (and in smoke mode) they are aiomqtt clients in this process.

Run on its own with ``python -m bench.live`` (it merges its keys into the results file), or as
part of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from bench.city import CITY, seed_database
from devices.live import Histogram, JitterBuffer
from gateway.settings import MqttTarget
from maeul.broker import LocalMosquitto
from maeul.broker_config import MosquittoConfig, raise_nofile_limit
from maeul.live import LiveClient, opus_packets
from tests.e2e.harness import TOKEN as BENCH_TOKEN
from tests.e2e.harness import GatewayProcess
from tests.media import make_recording
from wire import contract

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "latest.json"
LISTENERS = 358
JITTER_MS = 80
_PROBE = b"probe"


def _log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


@dataclass
class Arrivals:
    """What one listener heard: (arrival in Unix ms, frame bytes), in arrival order."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)


class Listeners:
    """N MQTT connections on the city's live topic, noting when each frame arrives."""

    def __init__(self, folder: Path, mqtt_url: str, count: int, *, compiled: bool) -> None:
        self.folder = folder
        self.target = MqttTarget(mqtt_url)
        self.count = count
        self.topic = contract.live_topic_all(CITY)
        self.binary = shutil.which("mosquitto_sub") if compiled else None
        self._processes: list[asyncio.subprocess.Process] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._heard: list[Arrivals] = [Arrivals() for _ in range(count)]

    @property
    def kind(self) -> str:
        return "mosquitto_sub" if self.binary else "aiomqtt"

    def _file(self, index: int) -> Path:
        return self.folder / f"listener-{index:04d}.txt"

    async def __aenter__(self) -> Listeners:
        if self.binary:
            for index in range(self.count):
                with self._file(index).open("wb") as out:
                    self._processes.append(
                        await asyncio.create_subprocess_exec(
                            self.binary,
                            *("-h", self.target.host, "-p", str(self.target.port)),
                            *("-V", "mqttv5", "-q", "0", "-t", self.topic, "-F", "%U %x"),
                            stdout=out,
                            stderr=asyncio.subprocess.DEVNULL,
                        )
                    )
        else:
            ready = [asyncio.Event() for _ in range(self.count)]
            self._tasks = [
                asyncio.create_task(self._listen(i, ready[i]), name=f"live-listener-{i}")
                for i in range(self.count)
            ]
            async with asyncio.timeout(120):
                for event in ready:
                    await event.wait()
        await self._until_everyone_hears()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
        for process in self._processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in self._processes:
            await process.wait()

    async def _listen(self, index: int, ready: asyncio.Event) -> None:
        heard = self._heard[index].frames
        async with aiomqtt.Client(
            self.target.host, self.target.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.subscribe(self.topic, qos=0)
            ready.set()
            async for message in client.messages:
                if isinstance(message.payload, bytes):
                    heard.append((time.time() * 1000, message.payload))

    async def _until_everyone_hears(self) -> None:
        """Publish probes until every listener has one: then all are subscribed."""
        async with (
            aiomqtt.Client(
                self.target.host, self.target.port, protocol=aiomqtt.ProtocolVersion.V5
            ) as client,
            asyncio.timeout(120),
        ):
            while True:
                await client.publish(self.topic, _PROBE, qos=0)
                await asyncio.sleep(0.2)
                if all(len(self._arrivals(i).frames) > 0 for i in range(self.count)):
                    return

    def _arrivals(self, index: int) -> Arrivals:
        if not self.binary:
            return self._heard[index]
        heard = Arrivals()
        with contextlib.suppress(FileNotFoundError):
            for line in self._file(index).read_text().splitlines():
                at, _, payload = line.partition(" ")
                with contextlib.suppress(ValueError):
                    heard.frames.append((float(at) * 1000, bytes.fromhex(payload)))
        return heard

    def heard(self) -> list[Arrivals]:
        return [self._arrivals(i) for i in range(self.count)]


@dataclass
class Playout:
    latency: Histogram = field(default_factory=Histogram)
    lost: int = 0  # never came, or came after their slot (late)
    late: int = 0
    listened: int = 0


def playout(heard: list[Arrivals], session: str, sent: int, jitter_ms: int) -> Playout:
    """Every listener's arrivals of `session` through the speakers' jitter buffer."""
    result = Playout()
    for arrivals in heard:
        buffer = JitterBuffer(target_ms=jitter_ms, keep_payloads=False)
        for at, data in arrivals.frames:
            try:
                frame = contract.decode_live_frame(data)
            except contract.WireError:
                continue  # a probe
            if frame.session != session or frame.kind is not contract.LiveKind.AUDIO:
                continue
            buffer.push(frame.seq, frame.at_ms, b"", at, restart=frame.starts_spurt)
        result.listened += buffer.received > 0
        result.lost += sent - buffer.received
        result.late += buffer.late
        result.latency.merge(buffer.latency)
    return result


@contextlib.asynccontextmanager
async def _gateway(folder: Path, mqtt_url: str, listeners: int) -> AsyncIterator[GatewayProcess]:
    """A gateway whose city has `listeners` speakers (offline: the listeners stand in for
    them); start commands go out, and nobody acknowledges them."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    gateway = GatewayProcess(
        database_url=await seed_database(folder, listeners),
        mqtt_url=mqtt_url,
        data_dir=folder,
        city_code=CITY,
        extra_env={
            "GATEWAY_LIVE_JITTER_MS": str(JITTER_MS),
            # Nobody acknowledges the start commands here (real speakers would, before the
            # first word): no retries of them in the middle of the measurement.
            "GATEWAY_ACK_TIMEOUT_S": "600",
        },
    )
    await gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


async def _talk(gateway: GatewayProcess, packets: list[bytes]) -> tuple[str, int]:
    client = LiveClient(gateway.url, BENCH_TOKEN)
    try:
        await client.open({"category": "administrative", "all": True, "format": "opus"})
        await client.wait_for("ready", 120)
        await client.send_paced(packets)
        ended = await client.stop(120)
    finally:
        await client.close()
    return str(ended["broadcast_id"]), int(ended["frames"])


async def run_live_bench(
    folder: Path,
    mqtt_url: str,
    *,
    listeners: int,
    seconds: float,
    rounds: int,
    warmup: int,
    compiled: bool = True,
) -> dict[str, Any]:
    """Figures for the `live` keys of the results."""
    recording = make_recording(folder / "live-speech.m4a", "m4a", seconds=seconds)
    packets = await asyncio.to_thread(opus_packets, recording)
    sessions: list[tuple[str, int]] = []
    async with (
        _gateway(folder / "live", mqtt_url, listeners) as gateway,
        Listeners(folder, mqtt_url, listeners, compiled=compiled) as ears,
    ):
        for _ in range(warmup + rounds):
            sessions.append(await _talk(gateway, packets))
        await asyncio.sleep(1.0)  # the last frames on their way
        heard = await asyncio.to_thread(ears.heard)
        kind = ears.kind
    total = Histogram()
    lost = late = sent = 0
    listened: list[int] = []
    for index, (session, frames) in enumerate(sessions[warmup:], start=1):
        heard_round = playout(heard, session, frames, JITTER_MS)
        total.merge(heard_round.latency)
        lost += heard_round.lost
        late += heard_round.late
        sent += frames
        listened.append(heard_round.listened)
        _log(
            f"live round {index}: p50 {heard_round.latency.percentile(0.5)} ms, "
            f"p95 {heard_round.latency.percentile(0.95)} ms, {heard_round.lost} frames lost "
            f"({heard_round.late} late), {heard_round.listened}/{listeners} listeners heard it"
        )
    return {
        "status": "measured",
        "listeners": listeners,
        "p50_ms": total.percentile(0.5),
        "p95_ms": total.percentile(0.95),
        "max_ms": total.percentile(1.0),
        "frames_lost": lost,
        "frames_late": late,
        "frames_sent": sent,
        "frames_played": total.total,
        "listeners_heard_min": min(listened) if listened else 0,
        "talk_s": seconds,
        "rounds": rounds,
        "jitter_buffer_ms": JITTER_MS,
        "receiver": kind,
    }


def live_settings(smoke: bool) -> dict[str, Any]:
    """Listeners, talk length and rounds: tiny in smoke mode."""
    if smoke:
        return {"listeners": 5, "seconds": 1.0, "rounds": 1, "warmup": 0, "compiled": False}
    return {
        "listeners": LISTENERS,
        "seconds": 10.0,
        "rounds": int(os.environ.get("BENCH_ROUNDS", "3")),
        "warmup": 1,
    }


async def _main_async(smoke: bool) -> dict[str, Any]:
    raise_nofile_limit()
    with tempfile.TemporaryDirectory(prefix="maeul-bench-live-") as scratch:
        folder = Path(scratch)
        broker = LocalMosquitto(MosquittoConfig(data_dir=folder / "mosquitto"))
        async with broker:
            return await run_live_bench(folder, broker.url, **live_settings(smoke))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    live = asyncio.run(_main_async(os.environ.get("BENCH_SMOKE") == "1"))
    result: dict[str, Any] = {}
    if args.output.exists():
        result = json.loads(args.output.read_text())
    result["live"] = live
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.write(json.dumps(live, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
