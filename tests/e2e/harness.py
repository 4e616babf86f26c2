"""Runs the gateway as a real process (so tests can SIGKILL it) and talks to it over HTTP."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.net import free_port

TOKEN = "e2e-token-" + "y" * 24
# Every replica of a test shares the secrets a city's replicas share (each has a data directory
# of its own, so none would share the ones made there): access tokens, the signing keys' seal,
# audio links and audit checkpoints.
JWT_SECRET = secrets.token_urlsafe(32)
KEY_ENCRYPTION_KEY = secrets.token_urlsafe(32)
SHARED_SECRETS = {
    "GATEWAY_JWT_SECRET": JWT_SECRET,
    "GATEWAY_KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY,
    "GATEWAY_AUDIO_URL_KEY": secrets.token_urlsafe(32),
    "GATEWAY_AUDIT_CHECKPOINT_KEY": secrets.token_urlsafe(32),
}


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
            **SHARED_SECRETS,
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

    def pause(self) -> None:
        """Freeze the process where it stands (SIGSTOP), so a test can look at what it holds."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

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


async def forget_gateway_session(gateway: GatewayProcess) -> None:
    """End the broker session a stopped replica left behind. It keeps its place in the shared
    subscription for minutes (so a restart loses no ack), taking its share of every later
    test's acks and presence with it. Its client id is random: the replica noted it in its data
    directory."""
    import aiomqtt

    from gateway.settings import MqttTarget

    replica = gateway.env()["GATEWAY_REPLICA_ID"]
    noted = gateway.data_dir / f"mqtt-session-{replica}"
    target = MqttTarget(gateway.mqtt_url)
    for client_id in noted.read_text().split() if noted.exists() else []:
        async with aiomqtt.Client(
            target.host,
            target.port,
            username=target.username,
            password=target.password,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
        ):
            pass


# -- Fleets and the speakers' own account of what they played ------------------


async def fleet_for(
    client: httpx.AsyncClient,
    mqtt_url: str,
    gateway_url: str,
    *,
    only: Any = None,
    receipts: bool = False,
    **faults: Any,
) -> Any:
    """Start simulated speakers for the gateway's fleet (those `only(item)` keeps, or all);
    with `receipts`, each makes its own receipt key and enrolls the public half first."""
    import base64

    from devices.simulator import Fleet
    from devices.simulator_config import (
        FleetConfig,
        SimSpeaker,
        receipt_public_keys,
        with_receipt_keys,
    )
    from wire.contract import SpeakerIdentity

    city = (await client.get("/api/v1/city")).json()
    fleet = (await client.get("/api/v1/speakers/fleet")).json()
    keys = {
        k["key_id"]: base64.b64decode(k["public_key"])
        for k in (await client.get("/api/v1/keys")).json()
    }
    items = fleet["items"] if isinstance(fleet, dict) else fleet
    speakers = [
        SimSpeaker(
            identity=SpeakerIdentity(
                city=city["code"],
                district=s["district_code"],
                village=s["village_code"],
                speaker=s["code"],
            ),
            codecs=tuple(s["codecs"]),
            kind=s.get("kind", "loudspeaker"),
        )
        for s in items
        if only is None or only(s)
    ]
    if receipts:
        speakers = with_receipt_keys(speakers)
        enrolled = await client.put(
            "/api/v1/speakers/receipt-keys", json={"keys": receipt_public_keys(speakers)}
        )
        assert enrolled.status_code == 200, enrolled.text
    config = FleetConfig(
        mqtt_url=mqtt_url, gateway_url=gateway_url, seed=3, public_keys=keys, **faults
    )
    simulated = Fleet(config)
    await simulated.start(speakers)
    return simulated


async def metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """The gateway's /metrics as name (with labels) -> value."""
    text = (await client.get("/metrics")).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def intake_count(values: dict[str, float], kind: str) -> float:
    return values.get(f'maeul_intake_total{{kind="{kind}"}}', 0.0)


@dataclass(frozen=True)
class Play:
    speaker: str
    broadcast_id: str
    started_ms: int
    expires_at_ms: int


@dataclass(frozen=True)
class Tally:
    """What went wrong with one broadcast, from the speakers' own plays and the gateway's record."""

    lost: int  # should have played and did not, or played and the record does not say so
    duplicated: int  # played more than once
    stale: int  # started after the broadcast expired

    def __str__(self) -> str:
        return f"lost={self.lost} duplicated={self.duplicated} stale={self.stale}"


class PlayLog:
    """Every play a simulated speaker starts, as the speaker itself saw it."""

    def __init__(self) -> None:
        self.plays: list[Play] = []

    def attach(self, fleet: Any) -> None:
        from devices.actions import Play as PlayAction

        for simulated in fleet:
            original = simulated.run

            def run(actions: list[Any], _original: Any = original, _id: str = simulated.id) -> None:
                for action in actions:
                    if isinstance(action, PlayAction):
                        command = action.command
                        self.plays.append(
                            Play(
                                _id,
                                command.broadcast_id,
                                _now_ms(),
                                command.expires_at_ms,
                            )
                        )
                _original(actions)

            simulated.run = run

    def tally(
        self, summary: dict[str, Any], *, should_play: set[str], simulated: set[str]
    ) -> Tally:
        """`summary`: the gateway's final broadcast with its deliveries; `should_play`: the
        speakers that had to play it; `simulated`: the speakers whose plays this log saw."""
        broadcast_id = summary["id"]
        counts: dict[str, int] = {}
        stale = 0
        for play in self.plays:
            if play.broadcast_id != broadcast_id:
                continue
            counts[play.speaker] = counts.get(play.speaker, 0) + 1
            stale += play.started_ms > play.expires_at_ms
        recorded = {
            s["code"]
            for v in summary["village_deliveries"]
            for s in v["speakers"]
            if s["state"] == "played"
        }
        played = set(counts)
        lost = len(should_play - played) + len((played ^ recorded) & simulated)
        duplicated = sum(n - 1 for n in counts.values())
        return Tally(lost=lost, duplicated=duplicated, stale=stale)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


async def pick_villages(client: httpx.AsyncClient, speakers: int) -> dict[int, str]:
    """Villages (id -> code), in code order, until they hold at least `speakers` speakers."""
    chosen: dict[int, str] = {}
    total, offset = 0, 0
    while total < speakers:
        page = (
            await client.get("/api/v1/villages", params={"limit": 100, "offset": offset})
        ).json()
        if not page["items"]:
            break
        for village in page["items"]:
            chosen[village["id"]] = village["code"]
            total += village["speaker_count"]
            if total >= speakers:
                break
        offset += len(page["items"])
    return chosen


async def broadcast_to(
    client: httpx.AsyncClient, clip: bytes, village_ids: Any, **form: Any
) -> dict[str, Any]:
    import uuid

    response = await client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "village_ids": list(village_ids), **form},
        files={"file": ("phone.m4a", clip, "audio/mp4")},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_online(client: httpx.AsyncClient, count: int, *, exactly: bool = False) -> None:
    async with asyncio.timeout(120):
        while True:
            response = await client.get("/api/v1/speakers", params={"online": "true", "limit": 1})
            total = response.json()["total"] if response.status_code == 200 else -1
            if total == count or (not exactly and total > count):
                return
            await asyncio.sleep(0.2)


def speaker_states(summary: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Speaker code -> (delivery state, reason) from a broadcast's summary."""
    return {
        s["code"]: (s["state"], s.get("reason"))
        for v in summary["village_deliveries"]
        for s in v["speakers"]
    }
