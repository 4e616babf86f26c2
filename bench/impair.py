"""A TCP proxy that makes a loopback link look like a mobile one: delay, jitter and stalls.

The kernel here has no netem, so the live benchmark puts this between the speakers and the
broker. Every chunk read from one side is written to the other after a random delay (uniform in
delay ± jitter); TCP reorders nothing, so a chunk never leaves before the one ahead of it (its
release is at least the previous one's). Every ``stall_every_s`` each direction stops for
``stall_ms`` (at its own random phase): what would leave during the stall leaves at its end.
Each connection and direction draws from its own generator, seeded from ``seed``, so a run can
be repeated.

    python -m bench.impair --listen 18830 --upstream 127.0.0.1:1883 \\
        --delay-ms 40 --jitter-ms 20 --stall-ms 300 --stall-every-s 10 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
from dataclasses import dataclass
from typing import Final

_READ: Final = 65536


@dataclass(frozen=True, slots=True)
class Impairment:
    delay_ms: float = 40.0
    jitter_ms: float = 20.0
    stall_ms: float = 300.0
    stall_every_s: float = 10.0  # 0: never
    seed: int = 0


class Schedule:
    """When each chunk of one direction leaves; times in seconds on the event loop's clock."""

    def __init__(self, impairment: Impairment, rng: random.Random, start: float) -> None:
        self.impairment = impairment
        self.rng = rng
        every = impairment.stall_every_s
        self.first_stall = start + rng.uniform(0, every) if every > 0 else None
        self.previous = start

    def stall_end(self, at: float) -> float | None:
        """The end of the stall `at` falls in, if it falls in one."""
        every, length = self.impairment.stall_every_s, self.impairment.stall_ms / 1000
        if self.first_stall is None or at < self.first_stall:
            return None
        begun = self.first_stall + (at - self.first_stall) // every * every
        return begun + length if at < begun + length else None

    def release(self, arrived: float) -> float:
        """When a chunk that arrived at `arrived` leaves: delayed, in order, never in a stall."""
        low = max(0.0, self.impairment.delay_ms - self.impairment.jitter_ms)
        high = self.impairment.delay_ms + self.impairment.jitter_ms
        at = max(self.previous, arrived + self.rng.uniform(low, high) / 1000)
        if (end := self.stall_end(at)) is not None:
            at = end
        self.previous = at
        return at


async def _forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, schedule: Schedule
) -> None:
    """Copy one direction through `schedule`; half-close the far side when this side ends."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            at, data = await queue.get()
            if (wait := at - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver(), name="impair-deliver")
    try:
        while data := await reader.read(_READ):
            queue.put_nowait((schedule.release(loop.time()), data))
        queue.put_nowait((schedule.release(loop.time()), b""))
        await delivering
    finally:
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await delivering


class ImpairProxy:
    """Listens on `listen_port` (0: any free one) and relays every connection to the upstream."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        impairment: Impairment,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.impairment = impairment
        self.listen = (listen_host, listen_port)
        self._server: asyncio.Server | None = None
        self._connections = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, *self.listen)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> ImpairProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _schedule(self, connection: int, direction: str) -> Schedule:
        rng = random.Random(f"{self.impairment.seed}:{connection}:{direction}")
        return Schedule(self.impairment, rng, asyncio.get_running_loop().time())

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections += 1
        number = self._connections
        upstream_w: asyncio.StreamWriter | None = None
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
            await asyncio.gather(
                _forward(client_r, upstream_w, self._schedule(number, "up")),
                _forward(upstream_r, client_w, self._schedule(number, "down")),
            )
        except ConnectionError:
            pass
        finally:
            self._tasks.discard(task)
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _serve_forever(args: argparse.Namespace) -> None:
    impairment = Impairment(
        delay_ms=args.delay_ms,
        jitter_ms=args.jitter_ms,
        stall_ms=args.stall_ms,
        stall_every_s=args.stall_every_s,
        seed=args.seed,
    )
    host, port = _host_port(args.upstream)
    proxy = ImpairProxy(host, port, impairment, listen_host=args.host, listen_port=args.listen)
    async with proxy:
        sys.stdout.write(f"listening on {args.host}:{proxy.port}\n")
        sys.stdout.flush()
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.impair", description=__doc__)
    parser.add_argument("--listen", type=int, required=True, help="port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--upstream", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--delay-ms", type=float, default=40.0)
    parser.add_argument("--jitter-ms", type=float, default=20.0)
    parser.add_argument("--stall-ms", type=float, default=300.0)
    parser.add_argument("--stall-every-s", type=float, default=10.0, help="0: never stall")
    parser.add_argument("--seed", type=int, default=0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
