"""A real `maeul serve` process: how it stops, and whose address it records.

SIGTERM with a board's event stream open: the stream ends, the process exits by itself and the
replica's drain runs (before, uvicorn waited for the stream for ever and the container's stop
killed it with the drain never run). A local client naming another address in X-Forwarded-For
is not believed (before, uvicorn trusted 127.0.0.1's headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import GatewayProcess, forget_gateway_session
from tests.e2e.test_jinju import _broadcast
from tests.media import make_recording
from tests.support.databases import seed_database

pytestmark = [pytest.mark.e2e]

# A generous bound, so a process that never stops fails the test instead of hanging it.
LIMIT_S = 90
DRAINED = "left the shared subscriptions and drained"
SPOOFED = "203.0.113.66"


async def _gateway(tmp_path: Path, mqtt_url: str, **env: str) -> GatewayProcess:
    gateway = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny"
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        extra_env={
            "GATEWAY_REPLICA_ID": f"stop-{secrets.token_hex(4)}",
            "GATEWAY_LOG_LEVEL": "INFO",
            **env,
        },
    )
    await gateway.start()
    return gateway


async def _stopped(gateway: GatewayProcess) -> int:
    assert gateway.process is not None
    async with asyncio.timeout(LIMIT_S):
        while gateway.process.poll() is None:  # noqa: ASYNC110 - polling a child process
            await asyncio.sleep(0.1)
    return gateway.process.returncode


async def _read_events(response: httpx.Response, first: asyncio.Event) -> list[str]:
    events: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            events.append(line[len("data: ") :])
            first.set()
    return events


async def test_sigterm_with_an_event_stream_open_ends_the_stream_and_drains(
    tmp_path: Path, mqtt_url: str
) -> None:
    recording = make_recording(tmp_path / "clip.m4a", "m4a", seconds=2.0).read_bytes()
    gateway = await _gateway(tmp_path, mqtt_url)
    try:
        async with gateway.client() as client:
            # No speaker is online: the broadcast runs until it expires, an hour from now.
            sent = await _broadcast(client, recording)
            first = asyncio.Event()
            async with client.stream(
                "GET", f"/api/v1/broadcasts/{sent['id']}/events", params={"detail": "true"}
            ) as response:
                assert response.status_code == 200
                reading = asyncio.create_task(_read_events(response, first))
                try:
                    async with asyncio.timeout(LIMIT_S):
                        await first.wait()
                    assert gateway.process is not None
                    gateway.process.send_signal(signal.SIGTERM)
                    await _stopped(gateway)
                    # The stream ended as a stream ends, not cut off by a cancelled request.
                    events = await asyncio.wait_for(reading, LIMIT_S)
                finally:
                    reading.cancel()
        assert events, "the board was sent the broadcast's state"
        assert '"state":"completed"' not in events[-1], "the broadcast was still running"
        assert DRAINED in gateway.log_tail(), gateway.log_tail()
    finally:
        gateway.stop()
        await forget_gateway_session(gateway)


async def _failed_login_source(gateway: GatewayProcess, headers: dict[str, str]) -> str | None:
    """A failed login from this test (127.0.0.1), and the source its audit row has."""
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        await anonymous.post(
            "/api/v1/auth/token",
            data={"username": "nobody-here", "password": "wrong-password-here"},
            headers=headers,
        )
    async with gateway.client() as client:
        rows = (await client.get("/api/v1/audit-events", params={"limit": 500})).json()["items"]
    # Newest first: the row of this attempt.
    return next(row["source"] for row in rows if row["action"] == "login_failed")


async def test_a_local_client_cannot_name_another_address(tmp_path: Path, mqtt_url: str) -> None:
    gateway = await _gateway(tmp_path, mqtt_url)
    try:
        source = await _failed_login_source(gateway, {"X-Forwarded-For": SPOOFED})
        assert source == "127.0.0.1"
    finally:
        gateway.stop()
        with contextlib.suppress(Exception):
            await forget_gateway_session(gateway)


async def test_behind_a_trusted_proxy_the_client_it_names_is_recorded(
    tmp_path: Path, mqtt_url: str
) -> None:
    gateway = await _gateway(tmp_path, mqtt_url, GATEWAY_TRUSTED_PROXIES="127.0.0.0/8")
    try:
        # As nginx writes it: what the client sent, then the address nginx was reached from.
        chained = {"X-Forwarded-For": f"{SPOOFED}, 198.51.100.7"}
        assert await _failed_login_source(gateway, chained) == "198.51.100.7"
        # A proxy that speaks RFC 7239 instead.
        standard = {"Forwarded": 'for="[2001:db8::7]:4711";proto=https'}
        assert await _failed_login_source(gateway, standard) == "2001:db8::7"
    finally:
        gateway.stop()
        with contextlib.suppress(Exception):
            await forget_gateway_session(gateway)
