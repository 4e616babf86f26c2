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

The same talk is then heard through a link like a mobile one: a few listeners connect to the
broker through `bench.impair` (40 ± 20 ms per segment each way, a 300 ms stall every 10 s),
with the same jitter buffer; ``impaired_p95_ms`` and ``impaired_lost_pct`` say what it costs.
Every listener's arrivals also go through the adaptive buffer the speakers run
(`devices.jitter`), stream after stream as a speaker learns its network: ``adaptive_*`` keys,
clean and impaired, beside the fixed buffer's. Last, the open peer: Snapcast measured from its
pipe to its player (`bench.snapcast`).

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
from bench.impair import Impairment
from bench.snapcast import run_snapcast_bench
from bench.stats import log as _log
from devices.jitter import ADAPTIVE
from devices.lead import LEAD
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
IMPAIRED_LISTENERS = 20
JITTER_MS = 80
# LTE-like: 40 ± 20 ms per segment each way, and now and then a 300 ms stall.
LTE = Impairment(delay_ms=40, jitter_ms=20, stall_ms=300, stall_every_s=10, seed=1)
_PROBE = b"probe"


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
    # Each audio frame's arrival at a listener minus its ``at_ms``: the fan-out's own delay,
    # which a jitter buffer has to cover.
    delay: Histogram = field(default_factory=Histogram)
    lost: int = 0  # never came, or came after their slot (late)
    late: int = 0
    listened: int = 0
    sent: int = 0
    heard_min: int = 0  # over several sessions: the fewest listeners that heard one


def playout(
    heard: list[Arrivals],
    session: str,
    sent: int,
    jitter_ms: int,
    learned: list[float] | None = None,
    from_mouth: bool = False,
) -> Playout:
    """Every listener's arrivals of `session` through the speakers' jitter buffer: the fixed
    one, or with `learned` (each listener's target so far) the adaptive one, as the speakers
    run it (each stream starts where the last one left off). `from_mouth`: latency runs from
    each frame's capture (its capture lag, as a speaker reads it) to when the device agent's
    horn sounds it (`LEAD.floor_ms` after its slot), instead of from the gateway's receipt."""
    result = Playout()
    for index, arrivals in enumerate(heard):
        if learned is None:
            buffer = JitterBuffer(target_ms=jitter_ms, keep_payloads=False)
        else:
            buffer = JitterBuffer(
                target_ms=ADAPTIVE.clamp(learned[index]), keep_payloads=False, adaptive=ADAPTIVE
            )
        for at, data in arrivals.frames:
            try:
                frame = contract.decode_live_frame(data)
            except contract.WireError:
                continue  # a probe
            if frame.session != session or frame.kind is not contract.LiveKind.AUDIO:
                continue
            result.delay.add(at - frame.at_ms)
            captured = frame.captured_ms
            buffer.push(
                frame.seq,
                frame.at_ms,
                b"",
                at,
                restart=frame.starts_spurt,
                captured_ms=None if captured is None else captured - LEAD.floor_ms,
            )
        if learned is not None and buffer.first_seq is not None:
            learned[index] = buffer.learned_ms
        result.listened += buffer.received > 0
        result.lost += sent - buffer.received
        result.late += buffer.late
        result.latency.merge(buffer.mouth if from_mouth else buffer.latency)
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


@contextlib.asynccontextmanager
async def _impaired(mqtt_url: str, impairment: Impairment) -> AsyncIterator[str]:
    """The broker behind an impairment proxy (a process of its own): its URL."""
    target = MqttTarget(mqtt_url)
    proxy = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "bench.impair", "--listen", "0", "--upstream", f"{target.host}:{target.port}"),
        *("--delay-ms", str(impairment.delay_ms), "--jitter-ms", str(impairment.jitter_ms)),
        *("--stall-ms", str(impairment.stall_ms), "--stall-every-s", str(impairment.stall_every_s)),
        *("--seed", str(impairment.seed)),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proxy.stdout is not None
        async with asyncio.timeout(60):
            line = (await proxy.stdout.readline()).decode().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the impairment proxy did not start: {line!r}")
        yield f"mqtt://{line.removeprefix('listening on ')}"
    finally:
        if proxy.returncode is None:
            proxy.terminate()
        await proxy.wait()


@dataclass(frozen=True)
class Talk:
    session: str
    frames: int


async def _talk(gateway: GatewayProcess, packets: list[bytes]) -> Talk:
    # Stamped as `maeul live` stamps: each packet captured until it is handed over, on the
    # gateway's clock as the client measured it; the frames carry it to the listeners.
    client = LiveClient(gateway.url, BENCH_TOKEN, stamped=True)
    try:
        await client.open({"category": "administrative", "all": True, "format": "opus"})
        await client.wait_for("ready", 120)
        await client.send_paced(packets)
        ended = await client.stop(120)
    finally:
        await client.close()
    return Talk(str(ended["broadcast_id"]), int(ended["frames"]))


def _summed(
    heard: list[Arrivals],
    sessions: list[Talk],
    label: str,
    *,
    adaptive: bool = False,
    warmup: int = 0,
    from_mouth: bool = False,
) -> Playout:
    """Every session's playout after the first `warmup`, added up (and logged round by
    round); the adaptive buffer learns during the warm-up as a speaker would. `from_mouth`:
    latency from each frame's capture to when the device agent's horn sounds it (its slot plus
    the `LEAD.floor_ms` the agent keeps its player fed ahead), as the speakers report it."""
    total = Playout(heard_min=len(heard) if sessions[warmup:] else 0)
    learned = [float(JITTER_MS)] * len(heard) if adaptive else None
    for index, talk in enumerate(sessions, start=1 - warmup):
        session, frames = talk.session, talk.frames
        heard_round = playout(heard, session, frames, JITTER_MS, learned, from_mouth)
        if index < 1:
            continue
        total.latency.merge(heard_round.latency)
        total.delay.merge(heard_round.delay)
        total.lost += heard_round.lost
        total.late += heard_round.late
        total.sent += frames
        total.heard_min = min(total.heard_min, heard_round.listened)
        _log(
            f"{label} round {index}: p50 {heard_round.latency.percentile(0.5)} ms, "
            f"p95 {heard_round.latency.percentile(0.95)} ms, {heard_round.lost} frames lost "
            f"({heard_round.late} late), {heard_round.listened}/{len(heard)} listeners heard it; "
            f"fan-out delay p50 {heard_round.delay.percentile(0.5)} ms, "
            f"p99 {heard_round.delay.percentile(0.99)} ms, "
            f"max {heard_round.delay.percentile(1.0)} ms"
        )
    return total


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


async def run_live_bench(
    folder: Path,
    mqtt_url: str,
    *,
    listeners: int,
    seconds: float,
    rounds: int,
    warmup: int,
    compiled: bool = True,
    impaired_listeners: int = IMPAIRED_LISTENERS,
    impairment: Impairment = LTE,
    smoke: bool = False,
) -> dict[str, Any]:
    """Figures for the `live` keys of the results."""
    recording = make_recording(folder / "live-speech.m4a", "m4a", seconds=seconds)
    packets = await asyncio.to_thread(opus_packets, recording)
    sessions: list[Talk] = []
    impaired_sessions: list[Talk] = []
    impaired_folder = folder / "impaired"
    await asyncio.to_thread(impaired_folder.mkdir, parents=True, exist_ok=True)
    async with _gateway(folder / "live", mqtt_url, listeners) as gateway:
        async with Listeners(folder, mqtt_url, listeners, compiled=compiled) as ears:
            for _ in range(warmup + rounds):
                sessions.append(await _talk(gateway, packets))
            await asyncio.sleep(1.0)  # the last frames on their way
            heard = await asyncio.to_thread(ears.heard)
            kind = ears.kind
        _log(
            f"live, impaired: {impaired_listeners} listeners behind {impairment.delay_ms:g} ± "
            f"{impairment.jitter_ms:g} ms, a {impairment.stall_ms:g} ms stall every "
            f"{impairment.stall_every_s:g} s"
        )
        async with (
            _impaired(mqtt_url, impairment) as impaired_url,
            Listeners(
                impaired_folder, impaired_url, impaired_listeners, compiled=compiled
            ) as impaired_ears,
        ):
            for _ in range(rounds):
                impaired_sessions.append(await _talk(gateway, packets))
            # The last frames on their way: the longest delay each way, and a stall.
            delay_s = (impairment.delay_ms + impairment.jitter_ms) / 1000
            await asyncio.sleep(0.2 + 2 * delay_s + impairment.stall_ms / 1000)
            impaired_heard = await asyncio.to_thread(impaired_ears.heard)
    clean = _summed(heard, sessions, "live", warmup=warmup)
    impaired = _summed(impaired_heard, impaired_sessions, "live, impaired")
    adaptive = _summed(heard, sessions, "live, adaptive", adaptive=True, warmup=warmup)
    adaptive_impaired = _summed(
        impaired_heard, impaired_sessions, "live, impaired, adaptive", adaptive=True
    )
    mouth = _summed(
        heard, sessions, "live, mouth to horn", adaptive=True, warmup=warmup, from_mouth=True
    )
    impaired_owed = impaired.sent * impaired_listeners
    clean_owed = clean.sent * listeners
    result: dict[str, Any] = {
        "status": "measured",
        "listeners": listeners,
        "p50_ms": clean.latency.percentile(0.5),
        "p95_ms": clean.latency.percentile(0.95),
        "max_ms": clean.latency.percentile(1.0),
        "frames_lost": clean.lost,
        "frames_late": clean.late,
        "frames_sent": clean.sent,
        "frames_played": clean.latency.total,
        "listeners_heard_min": clean.heard_min,
        "talk_s": seconds,
        "rounds": rounds,
        "jitter_buffer_ms": JITTER_MS,
        "receiver": kind,
        "impaired_p95_ms": impaired.latency.percentile(0.95),
        "impaired_lost_pct": _pct(impaired.lost, impaired_owed),
        "impaired": {
            "listeners": impaired_listeners,
            "p50_ms": impaired.latency.percentile(0.5),
            "max_ms": impaired.latency.percentile(1.0),
            "frames_lost": impaired.lost,
            "frames_late": impaired.late,
            "frames_sent": impaired.sent,
            "delay_ms": impairment.delay_ms,
            "jitter_ms": impairment.jitter_ms,
            "stall_ms": impairment.stall_ms,
            "stall_every_s": impairment.stall_every_s,
            "rounds": rounds,
        },
        # The adaptive buffer the speakers run, on the same arrivals, beside the fixed one.
        "adaptive_p50_ms": adaptive.latency.percentile(0.5),
        "adaptive_p95_ms": adaptive.latency.percentile(0.95),
        "adaptive_lost_pct": _pct(adaptive.lost, clean_owed),
        "adaptive_impaired_p50_ms": adaptive_impaired.latency.percentile(0.5),
        "adaptive_impaired_p95_ms": adaptive_impaired.latency.percentile(0.95),
        "adaptive_impaired_lost_pct": _pct(adaptive_impaired.lost, impaired_owed),
        "fixed_lost_pct": _pct(clean.lost, clean_owed),
        # From the talking client's capture of a frame to the device agent's horn, through the
        # adaptive buffer and the agent's player lead: beside the gateway-to-slot figures.
        "mouth_to_horn_p50_ms": mouth.latency.percentile(0.5),
        "mouth_to_horn_p95_ms": mouth.latency.percentile(0.95),
        "agent_lead_ms": LEAD.floor_ms,
        # What the buffers cover: a frame's arrival at a listener minus the gateway's receipt.
        "fanout_delay_p50_ms": clean.delay.percentile(0.5),
        "fanout_delay_p99_ms": clean.delay.percentile(0.99),
        "fanout_delay_max_ms": clean.delay.percentile(1.0),
        "adaptive": {
            "floor_ms": ADAPTIVE.floor_ms,
            "ceiling_ms": ADAPTIVE.ceiling_ms,
            "margin_ms": ADAPTIVE.margin_ms,
            "quantile": ADAPTIVE.quantile,
        },
    }
    _log("live peer: Snapcast, from its pipe to its player")
    result.update(await run_snapcast_bench(folder / "snapcast", smoke=smoke))
    return result


def live_settings(smoke: bool) -> dict[str, Any]:
    """Listeners, talk length and rounds: tiny in smoke mode."""
    if smoke:
        return {
            "listeners": 5,
            "seconds": 1.0,
            "rounds": 1,
            "warmup": 0,
            "compiled": False,
            "impaired_listeners": 2,
            "smoke": True,
        }
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
