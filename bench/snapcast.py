"""The live peer: Snapcast's latency from its pipe source to its file player, at several buffers.

Snapcast (`snapserver` and `snapclient`, Debian's packages) is the open-source reference for
synchronised multi-speaker audio. Here one server and one client run on loopback on free ports:
the server reads 16 kHz mono PCM from a named pipe (codec ``pcm``, so nothing is encoded), the
client writes what it plays to its stdout (``--player file``). This process writes silence into
the pipe in real time, 20 ms at a time, with a click every quarter of a second; each click
carries its number, so a click that never comes out is known as lost.

A click enters when the block that starts with it is written into the pipe. It comes out when
the player writes the 50 ms block holding it, plus its place in that block (a file has no DAC:
this is the earliest the peer could sound it). The player writes a block every 50 ms on its own
clock and never ahead of it, so a block's time is the earliest, over the reads that follow, of
the read's time less the blocks written since: the reader's own delays do not count.

The buffer (``--stream.buffer``) is Snapcast's end-to-end latency setting; the result names the
lowest buffer that lost no click, and its median latency.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.stats import log as _log
from bench.stats import percentile
from tests.support.net import free_port, reachable

RATE: Final = 16_000
SAMPLE_BYTES: Final = 2
WRITE_MS: Final = 20  # what a real-time source hands the pipe at a time
PLAYER_BLOCK_MS: Final = 50  # Snapcast's file player writes this much every 50 ms
CLICK_SAMPLES: Final = 16
CLICK_LEVEL: Final = 20_000
_CODE_BASE: Final = 1_000
_QUIET: Final = 10_000
BUFFERS_MS: Final = (1000, 200, 100, 50)
# Silence before the first click: the client syncs its clock and the stream starts playing.
LEAD_S: Final = 2.0
SMOKE_LEAD_S: Final = 1.0


def click_block(number: int) -> bytes:
    """A 20 ms block that starts with click `number`: a burst, then its number and its negation."""
    samples = array.array("h", bytes(RATE * WRITE_MS // 1000 * SAMPLE_BYTES))
    for index in range(CLICK_SAMPLES):
        samples[index] = CLICK_LEVEL if index % 2 == 0 else -CLICK_LEVEL
    samples[CLICK_SAMPLES] = _CODE_BASE + number
    samples[CLICK_SAMPLES + 1] = -(_CODE_BASE + number)
    return samples.tobytes()


def find_clicks(pcm: bytes) -> dict[int, int]:
    """Click number -> the sample where it starts in `pcm` (the first time it is whole)."""
    samples = array.array("h", pcm[: len(pcm) // SAMPLE_BYTES * SAMPLE_BYTES])
    found: dict[int, int] = {}
    quiet_since = 0
    index = 0
    end = len(samples) - CLICK_SAMPLES - 2
    while index < end:
        if abs(samples[index]) < _QUIET:
            index += 1
            continue
        if index > quiet_since:
            code = samples[index + CLICK_SAMPLES]
            if code >= _CODE_BASE and samples[index + CLICK_SAMPLES + 1] == -code:
                found.setdefault(code - _CODE_BASE, index)
        index += CLICK_SAMPLES + 2
        quiet_since = index
    return found


def block_times(reads: list[tuple[float, int]], block_bytes: int) -> list[float]:
    """When the player wrote each whole block, from (monotonic time, bytes so far) per read.

    The player never writes a block early, so a read that holds block b + k tells that block b
    was written at most k blocks' time before it; the earliest such bound, over a second of
    reads, undoes the reader's own lateness."""
    period = PLAYER_BLOCK_MS / 1000
    blocks = reads[-1][1] // block_bytes if reads else 0
    times = [float("inf")] * blocks
    covered = 0  # blocks that an earlier read held whole
    for at, total in reads:
        last = total // block_bytes - 1
        for block in range(max(0, min(covered, last - 1000 // PLAYER_BLOCK_MS)), last + 1):
            times[block] = min(times[block], at - (last - block) * period)
        covered = max(covered, last + 1)
    return times


@dataclass
class Setting:
    buffer_ms: int
    clicks: int
    latencies_ms: list[float]

    @property
    def lost(self) -> int:
        return self.clicks - len(self.latencies_ms)

    def entry(self) -> dict[str, Any]:
        heard = self.latencies_ms
        return {
            "buffer_ms": self.buffer_ms,
            "p50_ms": round(percentile(heard, 0.5), 1) if heard else None,
            "p95_ms": round(percentile(heard, 0.95), 1) if heard else None,
            "clicks": self.clicks,
            "lost": self.lost,
        }


def latencies(pcm: bytes, reads: list[tuple[float, int]], sent: dict[int, float]) -> list[float]:
    """Each click's latency in ms, from its write into the pipe to its place in the output."""
    block_samples = RATE * PLAYER_BLOCK_MS // 1000
    times = block_times(reads, block_samples * SAMPLE_BYTES)
    found: list[float] = []
    for number, start in find_clicks(pcm).items():
        block, offset = divmod(start, block_samples)
        if number in sent and block < len(times):
            out = times[block] + offset / RATE
            found.append((out - sent[number]) * 1000)
    return found


class _Writer(threading.Thread):
    """Feeds the pipe in real time from a thread of its own: silence, and a click now and then."""

    def __init__(self, fd: int, lead_s: float, clicks: int, every_s: float) -> None:
        super().__init__(name="snapcast-pipe-writer", daemon=True)
        self.fd, self.lead_s, self.clicks, self.every_s = fd, lead_s, clicks, every_s
        self.sent: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        silence = bytes(RATE * WRITE_MS // 1000 * SAMPLE_BYTES)
        period = WRITE_MS / 1000
        per_click = round(self.every_s / period)
        first = round(self.lead_s / period)
        start = time.monotonic()
        block = 0
        while not self.stop.is_set():
            number = (block - first) // per_click
            clicking = block >= first and (block - first) % per_click == 0
            if clicking and number < self.clicks:
                data = click_block(number)
                self.sent[number] = time.monotonic()
            else:
                data = silence
            with contextlib.suppress(BlockingIOError):
                os.write(self.fd, data)
            block += 1
            time.sleep(max(0.0, start + block * period - time.monotonic()))


def _open_for_writing(fifo: Path) -> int:
    """The pipe's write end, without waiting for the server to open its read end.

    Opened for reading and writing (Linux allows that on a FIFO, and it never blocks): the
    server's own open blocks until a writer is there, and a write-only open would wait for it."""
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    return fd


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def _prepare(folder: Path) -> tuple[Path, int, Path]:
    """The pipe (with its write end open) and an empty configuration file, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    fifo = folder / "pipe"
    os.mkfifo(fifo)
    config = folder / "snapserver.conf"  # not the machine's /etc/snapserver.conf
    config.write_text("")
    return fifo, _open_for_writing(fifo), config


def _wait_listening(port: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not reachable("127.0.0.1", port, 0.2):
        if time.monotonic() > deadline:
            raise TimeoutError(f"snapserver did not listen on {port}")
        time.sleep(0.05)


async def measure(
    folder: Path, buffer_ms: int, clicks: int, every_s: float, lead_s: float = LEAD_S
) -> Setting:
    """One server and one client at `buffer_ms`; `clicks` clicks, `every_s` apart."""
    server_bin, client_bin = shutil.which("snapserver"), shutil.which("snapclient")
    assert server_bin is not None
    assert client_bin is not None
    fifo, fd, config = await asyncio.to_thread(_prepare, folder)
    port = free_port()
    source = f"pipe://{fifo}?name=bench&mode=read&sampleformat={RATE}:16:1&codec=pcm"
    server = await asyncio.create_subprocess_exec(
        *(server_bin, "-c", str(config), f"--server.datadir={folder}"),
        *("--http.enabled=0", "--tcp.enabled=0"),
        *(f"--stream.port={port}", "--stream.bind_to_address=127.0.0.1"),
        *(f"--stream.source={source}", f"--stream.buffer={buffer_ms}"),
        "--logging.sink=null",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    client: asyncio.subprocess.Process | None = None
    writer: _Writer | None = None
    pcm = bytearray()
    reads: list[tuple[float, int]] = []
    try:
        await asyncio.to_thread(_wait_listening, port, 10.0)
        client = await asyncio.create_subprocess_exec(
            *(client_bin, "-h", "127.0.0.1", "-p", str(port), "--hostID", "maeul-bench"),
            *("--player", "file:filename=stdout", "--logsink", "null"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        writer = _Writer(fd, lead_s=lead_s, clicks=clicks, every_s=every_s)
        writer.start()
        assert client.stdout is not None
        done_at = time.monotonic() + lead_s + clicks * every_s + buffer_ms / 1000 + 0.5
        while (left := done_at - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    data = await client.stdout.read(65536)
                    if not data:
                        break
                    pcm += data
                    reads.append((time.monotonic(), len(pcm)))
    finally:
        if writer is not None:
            writer.stop.set()
            await asyncio.to_thread(writer.join)
        for process in (client, server):
            if process is not None:
                await _stop(process)
        os.close(fd)
    sent = dict(writer.sent) if writer is not None else {}
    return Setting(buffer_ms, len(sent), latencies(bytes(pcm), reads, sent))


def lowest_lossless(settings: list[Setting]) -> Setting | None:
    lossless = [s for s in settings if s.clicks and s.lost == 0]
    return min(lossless, key=lambda s: s.buffer_ms, default=None)


async def run_snapcast_bench(folder: Path, *, smoke: bool) -> dict[str, Any]:
    """The `live.peer_snapcast*` keys: every buffer's figures, and the lowest that lost nothing."""
    if not (shutil.which("snapserver") and shutil.which("snapclient")):
        _log("snapcast: snapserver/snapclient not installed (scripts/bootstrap.sh --with-ffmpeg)")
        return {"peer_snapcast_p50_ms": None, "peer_snapcast": {"status": "not_installed"}}
    buffers, clicks, lead_s = ((1000,), 3, SMOKE_LEAD_S) if smoke else (BUFFERS_MS, 20, LEAD_S)
    settings: list[Setting] = []
    for buffer_ms in buffers:
        setting = await measure(folder / f"snapcast-{buffer_ms}", buffer_ms, clicks, 0.25, lead_s)
        settings.append(setting)
        entry = setting.entry()
        _log(
            f"snapcast buffer {buffer_ms} ms: p50 {entry['p50_ms']} ms, p95 {entry['p95_ms']} ms, "
            f"{setting.lost}/{setting.clicks} clicks lost"
        )
    best = lowest_lossless(settings)
    return {
        "peer_snapcast_p50_ms": best.entry()["p50_ms"] if best else None,
        "peer_snapcast": {
            "status": "measured",
            "buffer_ms": best.buffer_ms if best else None,
            "settings": [s.entry() for s in settings],
        },
    }


async def _main_async(smoke: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="maeul-bench-snapcast-") as scratch:
        return await run_snapcast_bench(Path(scratch), smoke=smoke)


if __name__ == "__main__":
    import json

    found = asyncio.run(_main_async(os.environ.get("BENCH_SMOKE") == "1"))
    sys.stdout.write(json.dumps(found, indent=2) + "\n")
