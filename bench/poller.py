"""Polls a broadcast's summary from its own process, so a busy fleet cannot delay the client."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def _poll(url: str, token: str, clients: int) -> list[float]:
    """Wait for a broadcast id on stdin, poll it until stdin closes; latencies in ms."""
    headers = {"Authorization": f"Bearer {token}"}
    pool = [httpx.AsyncClient(base_url=url, headers=headers, timeout=60) for _ in range(clients)]
    latencies: list[float] = []
    stop = asyncio.Event()
    try:
        for client in pool:
            await client.get("/readyz")  # connect before the clock starts
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        broadcast_id = (await asyncio.to_thread(sys.stdin.readline)).strip()
        path = f"/api/v1/broadcasts/{broadcast_id}"

        async def loop(client: httpx.AsyncClient) -> None:
            while not stop.is_set():
                started = time.perf_counter()
                response = await client.get(path, params={"detail": "false"})
                elapsed = (time.perf_counter() - started) * 1000
                latencies.append(elapsed if response.status_code == 200 else -1.0)

        tasks = [asyncio.create_task(loop(client)) for client in pool]
        await asyncio.to_thread(sys.stdin.readline)  # the end of the fan-out, or EOF
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        for client in pool:
            await client.aclose()
    return latencies


def main() -> int:
    url, token, clients = sys.argv[1], sys.argv[2], int(sys.argv[3])
    latencies = asyncio.run(_poll(url, token, clients))
    sys.stdout.write(json.dumps(latencies) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
