"""Runs the gateway as a real process (so tests can SIGKILL it) and talks to it over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TOKEN = "e2e-token-" + "y" * 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProcess:
    database_url: str
    mqtt_url: str
    data_dir: Path
    city_code: str = "jinju"
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "GATEWAY_ENVIRONMENT": "test",
            "GATEWAY_DATABASE_URL": self.database_url,
            "GATEWAY_MQTT_URL": self.mqtt_url,
            "GATEWAY_API_TOKEN": TOKEN,
            "GATEWAY_DATA_DIR": str(self.data_dir),
            "GATEWAY_CITY_CODE": self.city_code,
            "GATEWAY_PUBLIC_URL": self.url,
            "GATEWAY_REPLICA_ID": "e2e",
            "GATEWAY_LOG_LEVEL": "WARNING",
            # The tests run at any hour; quiet hours have tests of their own.
            "GATEWAY_QUIET_HOURS": "off",
            **self.extra_env,
        }

    def spawn(self) -> None:
        with (self.data_dir / "gateway.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "maeul.cli", "serve", "--port", str(self.port)],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        self.spawn()
        assert self.process is not None
        async with httpx.AsyncClient(base_url=self.url) as client:
            for _ in range(600):
                if self.process.poll() is not None:
                    raise RuntimeError(f"gateway exited: {self.log_tail()}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"gateway never became ready: {self.log_tail()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        path = self.data_dir / "gateway.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )


async def wait_until_final(
    client: httpx.AsyncClient, broadcast_id: str, *, limit_s: float = 240
) -> dict[str, Any]:
    """Poll the summary until no delivery can change (a bound so a broken run ends)."""
    async with asyncio.timeout(limit_s):
        while True:
            response = await client.get(f"/api/v1/broadcasts/{broadcast_id}")
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                if body["state"] in ("completed", "cancelled"):
                    return body
            await asyncio.sleep(0.3)
