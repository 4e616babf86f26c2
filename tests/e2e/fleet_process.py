"""Simulated speakers in a process of their own, so a test can freeze them (SIGSTOP) as a hung
device would be: no reads, no acks, no heartbeats, the connection left open.

Run as ``python -m tests.e2e.fleet_process GATEWAY_URL MQTT_URL TOKEN PLAYS_FILE CODE...``: it
starts a fleet of the speakers CODE... of the gateway's city, writes one JSON line per play it
starts to PLAYS_FILE (the speakers' own account), and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


async def _run(gateway_url: str, mqtt_url: str, token: str, plays: Path, codes: set[str]) -> None:
    from devices.actions import Play
    from tests.e2e.harness import fleet_for

    async with httpx.AsyncClient(
        base_url=gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        fleet = await fleet_for(
            client, mqtt_url, gateway_url, only=lambda s: s["code"] in codes, speed=4.0
        )
    with plays.open("a", encoding="utf-8") as out:
        for simulated in fleet:
            original = simulated.run

            def run(actions: list[Any], _original: Any = original, _id: str = simulated.id) -> None:
                for action in actions:
                    if isinstance(action, Play):
                        line = {
                            "speaker": _id,
                            "command_id": action.command.id,
                            "broadcast_id": action.command.broadcast_id,
                        }
                        out.write(json.dumps(line) + "\n")
                        out.flush()
                _original(actions)

            simulated.run = run
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stop.wait()
        await fleet.stop()


@dataclass
class FleetProcess:
    """The handle a test holds: start, freeze, wake, stop, and the plays the speakers started."""

    gateway_url: str
    mqtt_url: str
    token: str
    codes: list[str]
    plays_file: Path
    process: subprocess.Popen[str] | None = field(default=None, init=False)

    async def start(self) -> None:
        """Start the process; return once every speaker has connected."""
        self.spawn()
        assert self.process is not None
        assert self.process.stdout is not None
        line = await asyncio.to_thread(self.process.stdout.readline)
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the fleet process did not start: {line!r}")

    def spawn(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.fleet_process",
                self.gateway_url,
                self.mqtt_url,
                self.token,
                str(self.plays_file),
                *self.codes,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def wake(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def plays(self) -> list[dict[str, str]]:
        if not self.plays_file.exists():
            return []
        lines = self.plays_file.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


if __name__ == "__main__":
    gateway, mqtt, secret, file, *speakers = sys.argv[1:]
    asyncio.run(_run(gateway, mqtt, secret, Path(file), set(speakers)))
