"""A benchmark city: its database, the gateway process serving it and its simulated speakers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import sqlite3
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from bench.fleet import sim_speakers
from bench.stats import log
from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker, processes_for
from gateway.db import create_engine, create_sessions
from gateway.migrations import upgrade
from gateway.places import bulk
from gateway.places.csv_import import PlaceRow
from gateway.places.models import City
from gateway.residents.crypto import PhoneCipher
from gateway.seed import Preset, seed
from gateway.settings import MqttTarget
from gateway.signing import KeySeal
from gateway.speakers.bulk import SpeakerRow, upsert_speakers
from tests.e2e.harness import KEY_ENCRYPTION_KEY, GatewayProcess
from wire import contract

CITY = "bench"
# The simulated speakers' heartbeat: rare, so heartbeats are no noise in the measurements. Every
# bench gateway is told the same, or it would count them offline after three of its own.
FLEET_HEARTBEAT_S = 300
GATEWAY_ENV = {"GATEWAY_ACK_TIMEOUT_S": "60", "GATEWAY_HEARTBEAT_S": str(FLEET_HEARTBEAT_S)}
JINJU_VILLAGES = 358
JINJU_DISTRICTS = 21
# Tries of one broadcast's POST when the connection breaks under it (same Idempotency-Key).
POST_ATTEMPTS = 3
# Fleet settings a `bench.fleet` process finds itself.
_OWN_SETTINGS = frozenset({"gateway_url", "public_keys"})


async def seed_database(
    folder: Path,
    speaker_count: int | None,
    preset: Preset = "jinju",
    villages: int | None = None,
    *,
    households: bool = False,
) -> str:
    """Migrate a SQLite database; None seeds the preset (with `households`: its homes and their
    indoor receivers too), a number that many speakers (over `villages` villages, or one each
    up to Jinju's 358)."""
    path = folder / "maeul.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        async with create_sessions(engine)() as session:
            if speaker_count is None:
                # The residents' numbers are synthetic; the bench's gateway never opens them.
                cipher = PhoneCipher(secrets.token_bytes(32)) if households else None
                await seed(session, preset=preset, city_code=CITY, cipher=cipher)
            else:
                await _seed_uniform(session, speaker_count, villages)
            await session.commit()
    finally:
        await engine.dispose()
    return url


async def _seed_uniform(session: Any, count: int, villages_wanted: int | None = None) -> None:
    """Jinju's shape (21 districts, up to 358 villages) with `count` speakers spread evenly."""
    now = datetime.now(UTC)
    city = City(code=CITY, name="벤치시", settings={}, created_at=now)
    session.add(city)
    await session.flush()
    village_count = min(count, villages_wanted or JINJU_VILLAGES, JINJU_VILLAGES)
    district_count = min(JINJU_DISTRICTS, village_count)
    villages = []
    for v in range(village_count):
        d = v % district_count + 1
        villages.append(
            PlaceRow(v + 2, f"d{d:02d}", f"구역{d:02d}", f"d{d:02d}-v{v + 1:03d}", f"마을{v + 1}")
        )
    await bulk.upsert_places(session, city, villages, now=now)
    rows = [
        SpeakerRow(
            line=i + 2,
            code=f"{villages[i % village_count].village_code}-s{i // village_count + 1}",
            village_code=villages[i % village_count].village_code,
            kind="loudspeaker",
            codecs=("opus", "mp3"),
        )
        for i in range(count)
    ]
    await upsert_speakers(session, city.id, rows, now=now)


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def peak_rss_mb(pid: int) -> float:
    """The most resident memory a process has had (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for pid {pid}")


def children_rss_mb(pid: int) -> float:
    """Resident memory of the direct children of a process (audio workers), in MiB."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError, RuntimeError):
                    total += rss_mb(int(child))
    return round(total, 1)


class Observer:
    """Runs bench.observer in its own process, so a busy fleet does not delay the timestamps."""

    def __init__(self, mqtt_url: str, expected: int) -> None:
        self.mqtt_url = mqtt_url
        self.expected = expected
        self.commands: dict[str, bytes] = {}  # broadcast id -> the play payload first seen
        self.command_topics: dict[str, str] = {}
        self._done: dict[str, tuple[float, float]] = {}
        self._changed = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.observer",
            self.mqtt_url,
            str(self.expected),
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(60):
            await self._ready.wait()

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            kind, *rest = line.decode().split()
            if kind == "ready":
                self._ready.set()
            elif kind == "cmd":
                # The first: the group publish. Later ones are the gateway's resends to single
                # speakers, whose scope names one speaker and would make a floor no other plays.
                self.commands.setdefault(rest[0], base64.b64decode(rest[2]))
                self.command_topics.setdefault(rest[0], rest[1])
            elif kind == "done":
                self._done[rest[0]] = (float(rest[1]), float(rest[2]))
                self._changed.set()

    async def wait(self, broadcast_id: str, started: float, limit_s: float) -> tuple[float, float]:
        """Milliseconds from `started` until every speaker acked received, and played."""
        try:
            async with asyncio.timeout(limit_s):
                while broadcast_id not in self._done:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise RuntimeError(
                f"broadcast {broadcast_id}: not every one of {self.expected} speakers "
                f"acked played after {limit_s:g} s"
            ) from None
        received_at, played_at = self._done[broadcast_id]
        return (received_at - started) * 1000, (played_at - started) * 1000


@dataclass
class Rounds:
    """What alternating gateway and floor rounds measured (ms), timed rounds only."""

    gateway_received: list[float] = field(default_factory=list)
    gateway_played: list[float] = field(default_factory=list)
    floor_received: list[float] = field(default_factory=list)
    floor_played: list[float] = field(default_factory=list)
    end_to_end: list[float] = field(default_factory=list)  # from the start of the POST
    template: bytes | None = None  # the gateway's first command, which the floor replays
    first_broadcast_id: str | None = None


class Bench:
    """One gateway process, its fleet and an observer, for one city on a shared broker: a
    number of speakers spread evenly, or the preset's (None).

    With `edge_urls` the speakers connect to those edge brokers instead, bridged to the broker
    at `mqtt_url` (`maeul.broker_bridge`), each edge serving whole districts; the gateway, the
    observer and the floor's publisher stay on the core.
    """

    def __init__(
        self,
        folder: Path,
        mqtt_url: str,
        speaker_count: int | None,
        edge_urls: Sequence[str] = (),
        preset: Preset = "jinju",
        villages: int | None = None,
        *,
        households: bool = False,
        category: str = "administrative",
        processes: int | None = 0,
    ) -> None:
        self.villages = villages
        # More than 0: the devices run in that many processes of their own (`bench.fleet`)
        # instead of in the bench's own event loop; None: as many as `maeul run` would start.
        self.processes = processes
        self._fleet_processes: list[asyncio.subprocess.Process] = []
        self.households = households
        self.category = category
        self.folder = folder
        self.preset: Preset = preset
        self.mqtt_url = mqtt_url
        self.speaker_count = speaker_count
        self.edge_urls = list(edge_urls)
        self.gateway: GatewayProcess | None = None
        self.fleets: list[Fleet] = []
        self.post_ms: dict[str, float] = {}  # broadcast id -> ms from the POST to its 201
        self._sims: list[SimSpeaker] = []
        self._fleet_config: dict[str, Any] = {}
        self.observer: Observer | None = None
        self.client: httpx.AsyncClient | None = None
        self.publisher: aiomqtt.Client | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def total(self) -> int:
        assert self.fleets or self._fleet_processes
        return len(self._sims)

    @property
    def sims(self) -> Sequence[SimSpeaker]:
        return self._sims

    @property
    def pid(self) -> int:
        assert self.gateway is not None
        assert self.gateway.process is not None
        return self.gateway.process.pid

    async def __aenter__(self) -> Bench:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self, speed: float = 50.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        url = await seed_database(
            self.folder, self.speaker_count, self.preset, self.villages, households=self.households
        )
        self.gateway = GatewayProcess(
            database_url=url,
            mqtt_url=self.mqtt_url,
            data_dir=self.folder,
            city_code=CITY,
            extra_env=GATEWAY_ENV,
        )
        await self.gateway.start()
        self._stack.callback(self.gateway.stop)
        self.client = await self._stack.enter_async_context(self.gateway.client())
        client = self.client
        fleet_page = (await client.get("/api/v1/speakers/fleet")).json()
        items = fleet_page["items"] if isinstance(fleet_page, dict) else fleet_page
        keys = {
            k["key_id"]: base64.b64decode(k["public_key"])
            for k in (await client.get("/api/v1/keys")).json()
        }
        city = (await client.get("/api/v1/city")).json()
        sims = sim_speakers(city["code"], items)
        self.observer = Observer(self.mqtt_url, len(sims))
        await self.observer.start()
        self._stack.push_async_callback(self.observer.stop)
        self._fleet_config = {
            "gateway_url": self.gateway.url,
            "seed": 3,
            "speed": speed,
            "public_keys": keys,
            "heartbeat_s": FLEET_HEARTBEAT_S,
            # Simulated speakers come back within a second of their broker: the scenarios time
            # the gateway, not a firmware's back-off.
            "backoff_max_s": 1.0,
        }
        self._sims = sims
        self._stack.push_async_callback(self._stop_fleets)
        await self._start_fleets()
        await self._wait_online(len(sims))
        target = MqttTarget(self.mqtt_url)
        self.publisher = await self._stack.enter_async_context(
            aiomqtt.Client(
                target.host,
                target.port,
                protocol=aiomqtt.ProtocolVersion.V5,
                identifier=f"bench-floor-{uuid.uuid4().hex[:8]}",
            )
        )

    async def _start_fleets(self) -> None:
        if self.processes is None:
            self.processes = processes_for(len(self._sims))
        if self.processes:
            await self._start_fleet_processes(self.processes)
            return
        for url, share in self._by_broker(self._sims):
            fleet = Fleet(FleetConfig(mqtt_url=url, **self._fleet_config))
            self.fleets.append(fleet)
            await fleet.start(share)

    async def _start_fleet_processes(self, count: int) -> None:
        assert self.gateway is not None
        # Each process reads the gateway's keys itself; the rest of the fleet's settings as here.
        plain = {k: v for k, v in self._fleet_config.items() if k not in _OWN_SETTINGS}
        settings = json.dumps(plain).encode() + b"\n"
        for part in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.fleet", self.gateway.url, self.mqtt_url,
                str(part), str(count),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            self._fleet_processes.append(process)
            assert process.stdin is not None
            process.stdin.write(settings)
            await process.stdin.drain()
            process.stdin.close()
        for process in self._fleet_processes:
            assert process.stdout is not None
            async with asyncio.timeout(300 + len(self._sims) / 50):
                line = await process.stdout.readline()
            if not line.startswith(b"ready"):
                raise RuntimeError(f"a fleet process did not start: {line!r}")

    async def _stop_fleets(self) -> None:
        processes, self._fleet_processes = self._fleet_processes, []
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await process.wait()
        fleets, self.fleets = self.fleets, []
        for fleet in fleets:
            await fleet.stop()

    async def move_fleet(self, edge_urls: Sequence[str]) -> None:
        """Take every speaker offline and bring it back on these edge brokers (none: the core),
        as a city would when it puts edge brokers in; the gateway and its database stay."""
        await self._stop_fleets()
        await self._wait_online(0, offline=True)
        self.edge_urls = list(edge_urls)
        await self._start_fleets()
        await self._wait_online(len(self._sims))

    def _by_broker(self, sims: list[SimSpeaker]) -> list[tuple[str, list[SimSpeaker]]]:
        """Which broker each speaker connects to: the core, or the edge of its district."""
        if not self.edge_urls:
            return [(self.mqtt_url, sims)]
        districts = sorted({sim.identity.district for sim in sims})
        edge_of = {d: i % len(self.edge_urls) for i, d in enumerate(districts)}
        shares: list[list[SimSpeaker]] = [[] for _ in self.edge_urls]
        for sim in sims:
            shares[edge_of[sim.identity.district]].append(sim)
        return [(url, share) for url, share in zip(self.edge_urls, shares, strict=True) if share]

    async def _wait_online(self, count: int, *, offline: bool = False) -> None:
        """Until at least `count` speakers are online (with `offline`: at most `count`)."""
        assert self.client is not None
        # Five minutes, and more for a city whose every home has a receiver online.
        async with asyncio.timeout(300 + count / 50):
            while True:
                response = await self.client.get(
                    "/api/v1/speakers", params={"online": "true", "limit": 1}
                )
                total = response.json()["total"]
                if (total <= count) if offline else (total >= count):
                    return
                await asyncio.sleep(0.3)

    async def post_broadcast(self, recording: bytes) -> tuple[str, float]:
        """Send to every village; the broadcast id and the perf_counter when 201 came back."""
        assert self.client is not None
        key = uuid.uuid4().hex
        posted = time.perf_counter()
        for attempt in range(POST_ATTEMPTS):
            try:
                response = await self.client.post(
                    "/api/v1/broadcasts",
                    data={"category": self.category, "all_villages": "true"},
                    files={"file": ("phone.m4a", recording, "audio/mp4")},
                    headers={"Idempotency-Key": key},
                )
                break
            except httpx.TransportError:
                # A kept-alive connection the server closed as the request left: sent again
                # under the same key, the gateway answers with the broadcast it made, if any.
                if attempt == POST_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.2)
        started = time.perf_counter()
        # 200: a repeat the gateway had already taken (Idempotent-Replayed).
        if response.status_code not in (200, 201):
            raise RuntimeError(f"broadcast refused: {response.status_code} {response.text}")
        broadcast_id = str(response.json()["id"])
        # Upload, transcode and database write: what an officer waits for before the fan-out.
        self.post_ms[broadcast_id] = (started - posted) * 1000
        return broadcast_id, started

    async def wait_completed(self, broadcast_id: str, limit_s: float = 120) -> None:
        """Poll until the gateway has recorded every ack, so the next round starts quiet."""
        assert self.client is not None
        async with asyncio.timeout(limit_s):
            while True:
                response = await self.client.get(
                    f"/api/v1/broadcasts/{broadcast_id}", params={"detail": "false"}
                )
                if response.status_code == 200 and response.json()["state"] in (
                    "completed",
                    "cancelled",
                ):
                    return
                await asyncio.sleep(0.2)

    async def alternate_rounds(
        self, recording: bytes, *, rounds: int, warmup: int, pause_s: float, limit_s: float = 120
    ) -> Rounds:
        """Gateway rounds and floor rounds in turn on this fleet, the floor replaying the
        gateway's first command; the figures of the rounds after the warm-up ones."""
        figures = Rounds()
        for index in range(warmup + rounds):
            timed = index >= warmup
            broadcast_id, received, played = await self.gateway_round(recording, limit_s)
            if figures.template is None:
                figures.template = self.template_for(broadcast_id)
                figures.first_broadcast_id = broadcast_id
            await asyncio.sleep(pause_s)
            floor_r, floor_p = await self.floor_round(figures.template, limit_s)
            await asyncio.sleep(pause_s)
            log(
                f"  round {index + 1}{'' if timed else ' (warm-up)'}: gateway "
                f"{received:.0f}/{played:.0f} ms, floor {floor_r:.0f}/{floor_p:.0f} ms"
            )
            if timed:
                figures.gateway_received.append(received)
                figures.gateway_played.append(played)
                figures.floor_received.append(floor_r)
                figures.floor_played.append(floor_p)
                figures.end_to_end.append(self.post_ms[broadcast_id] + played)
        return figures

    async def gateway_round(
        self, recording: bytes, limit_s: float = 120
    ) -> tuple[str, float, float]:
        """One broadcast through the gateway: (id, ms to all received, ms to all played)."""
        assert self.observer is not None
        broadcast_id, started = await self.post_broadcast(recording)
        received, played = await self.observer.wait(broadcast_id, started, limit_s)
        await self.wait_completed(broadcast_id, limit_s)
        return broadcast_id, received, played

    def _signer(self) -> tuple[str, bytes]:
        assert self.gateway is not None
        with contextlib.closing(sqlite3.connect(self.folder / "maeul.db")) as db:
            row = db.execute(
                "SELECT key_id, private_key FROM signing_keys WHERE active = 1 "
                "ORDER BY created_at LIMIT 1"
            ).fetchone()
        if row is None:
            raise RuntimeError("the gateway has no signing key yet")
        # Sealed at rest with the key every gateway of the harness shares.
        key_id = str(row[0])
        return key_id, KeySeal(KEY_ENCRYPTION_KEY.encode()).open(key_id, bytes(row[1]))

    def floor_payload(self, template: bytes) -> tuple[str, bytes]:
        """The gateway's own command with a fresh id, broadcast id, nonce and signature."""
        command = contract.decode_command(template)
        now = contract.now_ms()
        fresh = command.model_copy(
            update={
                "id": contract.new_id(),
                "broadcast_id": contract.new_id(),
                "nonce": contract.new_nonce(),
                "issued_at_ms": now,
                "expires_at_ms": now + max(60_000, command.expires_at_ms - command.issued_at_ms),
            }
        )
        key_id, private_key = self._signer()
        signed = contract.sign_command(fresh, key_id=key_id, private_key=private_key)
        return signed.broadcast_id, contract.encode_command(signed)

    async def floor_round(self, template: bytes, limit_s: float = 120) -> tuple[float, float]:
        """The same command straight to the broker on the all-city topic, no gateway."""
        assert self.publisher is not None
        assert self.observer is not None
        broadcast_id, payload = self.floor_payload(template)
        started = time.perf_counter()
        await self.publisher.publish(contract.command_topic_all(CITY), payload, qos=1)
        return await self.observer.wait(broadcast_id, started, limit_s)

    def template_for(self, broadcast_id: str) -> bytes:
        assert self.observer is not None
        payload = self.observer.commands.get(broadcast_id)
        if payload is None:
            raise RuntimeError(f"no command seen for broadcast {broadcast_id}")
        return payload
