"""The benchmark's impairment proxy passes every byte, in order, and only ever later."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sys
import time
from collections.abc import AsyncIterator

import pytest

from bench.impair import Impairment, ImpairProxy, Schedule


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    """A TCP server on a free port that sends back whatever it gets."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def _round_trip(port: int, chunks: list[bytes]) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(30):
            return await reader.read()  # until the far side closes
    finally:
        writer.close()


async def test_bytes_arrive_intact_and_in_order(echo: int) -> None:
    rng = random.Random(7)
    chunks = [os.urandom(rng.randint(1, 3000)) for _ in range(200)]
    impairment = Impairment(delay_ms=3, jitter_ms=3, stall_ms=20, stall_every_s=0.05, seed=1)
    async with ImpairProxy("127.0.0.1", echo, impairment) as proxy:
        echoed = await asyncio.gather(*(_round_trip(proxy.port, chunks) for _ in range(3)))
    assert echoed == [b"".join(chunks)] * 3


async def test_every_chunk_waits_at_least_the_shortest_delay_each_way(echo: int) -> None:
    impairment = Impairment(delay_ms=60, jitter_ms=20, stall_ms=0, stall_every_s=0)
    async with ImpairProxy("127.0.0.1", echo, impairment) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            for _ in range(3):
                sent = time.monotonic()
                writer.write(b"ping")
                await writer.drain()
                assert await reader.readexactly(4) == b"ping"
                assert time.monotonic() - sent >= 2 * 0.040  # there and back, 60 - 20 ms each
        finally:
            writer.close()


def test_the_schedule_keeps_order_and_nothing_leaves_during_a_stall() -> None:
    impairment = Impairment(delay_ms=40, jitter_ms=20, stall_ms=300, stall_every_s=2)
    schedule = Schedule(impairment, random.Random(3), start=0.0)
    assert schedule.first_stall is not None
    released = [schedule.release(arrived=i * 0.01) for i in range(1000)]  # 10 s of chunks
    assert released == sorted(released)
    assert all(r >= i * 0.01 + 0.020 for i, r in enumerate(released))
    assert all(schedule.stall_end(at) is None for at in released)
    # Chunks that met a stall left together at its end.
    assert max(b - a for a, b in itertools.pairwise(released)) >= 0.2


async def test_the_command_line_relays_to_its_upstream(echo: int) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "bench.impair", "--listen", "0", "--upstream", f"127.0.0.1:{echo}"),
        *("--delay-ms", "5", "--jitter-ms", "2", "--stall-every-s", "0", "--seed", "4"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert await _round_trip(port, [b"hello ", b"village"]) == b"hello village"
    finally:
        process.terminate()
        await process.wait()
