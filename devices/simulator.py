"""A fleet of simulated speakers in one process: real MQTT 5 connections, real acks, no horns.

Every speaker is a `SpeakerCore` behind its own `Link` (own client id, persistent session,
birth, will and heartbeats), exactly as the device agent runs one: see
`devices.simulated_speaker`. The fleet shares one `Hub`, one decoded-audio cache and one key
learner per city among its speakers; it connects them, ticks them and adds up what they did.
What it simulates, and the faults it injects, are set in `devices.simulator_config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx

from devices.hub import Hub
from devices.keyring import FetchRing, KeyLearner, http_keyring
from devices.link_settings import BrokerAddress, LinkSettings, tls_context
from devices.simulated_speaker import AudioLibrary, SimulatedSpeaker
from devices.simulator_config import FleetConfig, SimSpeaker, choose_faults
from devices.sound import Fetcher
from wire import contract

log = logging.getLogger(__name__)

_TICK_S: Final = 5.0
# A long demo must not grow without bound: forget commands an hour after they expired.
_PRUNE_EVERY_S: Final = 600.0
_KEEP_AFTER_EXPIRY_MS: Final = 3600 * 1000
_STARTS_KEPT: Final = 256  # broadcasts whose start times are kept


class FleetError(Exception):
    """The fleet could not start (no speaker could reach the broker)."""


@dataclass(frozen=True)
class FleetStats:
    speakers: int
    online: int
    offline: int  # kept offline on purpose (offline_ratio, go_offline)
    commands: int  # payloads received, duplicates included
    received: int
    played: int
    failed: int
    rejected: int
    preempted: int  # plays interrupted by a higher priority (each plays again later)
    malformed: int
    duplicates: int
    decodes: int  # clips actually decoded (the rest came from the shared cache)
    connect_s: float | None  # how long the first connection of every speaker took


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit: one descriptor per speaker."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


class Fleet:
    """Simulated speakers sharing one event loop, one `Hub` and one decoded-audio cache."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.hub = Hub(connect_concurrency=config.connect_concurrency)
        self.connect_s: float | None = None
        self._speakers: dict[str, SimulatedSpeaker] = {}
        self._http: httpx.AsyncClient | None = None
        self._library: AudioLibrary | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._keys: dict[str, KeyLearner] = {}
        self._verify: contract.SignatureCheck | None = None
        self._keyring: FetchRing | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # When each speaker's horn started each broadcast, in true Unix ms (the simulator knows
        # the true time whatever a speaker's clock says): how far neighbours are out of step.
        self.starts: OrderedDict[str, dict[str, float]] = OrderedDict()
        self.late_starts = 0  # plays whose speaker was ready only after their play-at time

    @property
    def library(self) -> AudioLibrary:
        if self._library is None:
            raise RuntimeError("the fleet is not started")
        return self._library

    @property
    def speakers(self) -> Mapping[str, SimulatedSpeaker]:
        return self._speakers

    def keys_for(self, city: str) -> KeyLearner | None:
        """The fleet's one key learner for `city` (None when commands are not signed or there
        is nowhere to learn keys from)."""
        if self._verify is None or self._keyring is None:
            return None
        learner = self._keys.get(city)
        if learner is None:
            learner = self._keys[city] = KeyLearner(self._verify, city, self._keyring)
        return learner

    def started(self, speaker: SimulatedSpeaker, command: contract.Command) -> None:
        self.starts.setdefault(command.broadcast_id, {})[speaker.id] = time.time() * 1000
        self.starts.move_to_end(command.broadcast_id)
        while len(self.starts) > _STARTS_KEPT:
            self.starts.popitem(last=False)

    def start_spread_ms(self, broadcast_id: str) -> dict[str, float]:
        """Per village: the last horn's start minus the first's, for one broadcast."""
        by_village: dict[str, list[float]] = {}
        for speaker_id, at in self.starts.get(broadcast_id, {}).items():
            village = self._speakers[speaker_id].spec.identity.village
            by_village.setdefault(village, []).append(at)
        return {v: max(times) - min(times) for v, times in by_village.items() if len(times) > 1}

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def speaker(self, speaker_id: str) -> SimulatedSpeaker:
        return self._speakers[speaker_id]

    @property
    def offline_ids(self) -> frozenset[str]:
        """Speakers kept offline on purpose (offline_ratio, or go_offline)."""
        return frozenset(i for i, s in self._speakers.items() if not s.link.wanted)

    def __iter__(self) -> Iterator[SimulatedSpeaker]:
        return iter(self._speakers.values())

    async def start(
        self,
        speakers: Sequence[SimSpeaker],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Connect every speaker not chosen to stay offline; `progress(done, total)` follows."""
        if self._speakers:
            raise RuntimeError("the fleet is already started")
        ids = [s.identity.speaker for s in speakers]
        if len(set(ids)) != len(ids):
            raise ValueError("speaker ids must be unique")
        raise_open_file_limit()
        config = self.config
        faults = choose_faults(ids, config)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0), follow_redirects=False)
        fetcher = Fetcher(
            client=self._http, token=config.audio_token, gateway_url=config.gateway_url
        )
        self._library = AudioLibrary(fetcher)
        verify = contract.SignatureCheck(config.public_keys) if config.public_keys else None
        self._verify = verify
        self._keyring = config.keyring
        if self._keyring is None and config.gateway_url is not None:
            self._keyring = http_keyring(self._http, config.gateway_url)
        broker = BrokerAddress.parse(config.mqtt_url)
        settings = LinkSettings(
            broker=broker,
            username=config.username,
            password=config.password,
            tls=tls_context(ca_file=config.ca_file) if broker.tls else None,
            keepalive_s=config.keepalive_s,
            session_expiry_s=config.session_expiry_s,
            heartbeat_s=config.heartbeat_s,
            connect_timeout_s=config.connect_timeout_s,
            backoff_max_s=config.backoff_max_s,
            firmware=config.firmware,
        )
        for spec in speakers:
            own = settings
            if config.credentials is not None:
                username, password = config.credentials(spec.identity)
                own = dataclasses.replace(settings, username=username, password=password)
            self._speakers[spec.identity.speaker] = SimulatedSpeaker(
                self, spec, faults[spec.identity.speaker], own, verify
            )
        wanted = [s for s in self._speakers.values() if not s.faults.offline]
        await self._connect_all(wanted, progress)
        self._ticker = asyncio.create_task(self._tick(), name="fleet-ticker")
        if wanted and not any(s.online for s in wanted):
            error = wanted[0].link.last_error
            await self.stop()
            raise FleetError(
                f"스피커가 브로커({broker.redacted()})에 연결하지 못했습니다 / "
                f"no speaker could connect to {broker.redacted()}: {error}"
            )
        log.info(
            "가상 스피커 %d대 연결 (%.1f초), 오프라인 %d대 / %d simulated speakers connected",
            sum(s.online for s in wanted),
            self.connect_s or 0.0,
            len(self._speakers) - len(wanted),
            len(wanted),
        )

    async def _connect_all(
        self, wanted: list[SimulatedSpeaker], progress: Callable[[int, int], None] | None
    ) -> None:
        total, done = len(wanted), 0
        if progress is not None:
            progress(0, total)
        pending = iter(wanted)
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal done
            for simulated in pending:
                await simulated.link.connect()
                done += 1
                if progress is not None:
                    progress(done, total)

        workers = min(total, self.config.connect_concurrency)
        await asyncio.gather(*(worker() for _ in range(workers)))
        self.connect_s = time.perf_counter() - started

    async def _tick(self) -> None:
        since_prune = 0.0
        while True:
            await asyncio.sleep(_TICK_S)
            for simulated in self._speakers.values():
                simulated.tick()
            since_prune += _TICK_S
            if since_prune >= _PRUNE_EVERY_S:
                since_prune = 0.0
                before = contract.now_ms() - _KEEP_AFTER_EXPIRY_MS
                for simulated in self._speakers.values():
                    simulated.journal.prune(before)

    async def stop(self) -> None:
        """Disconnect every speaker (their will says offline) and release everything."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for simulated in self._speakers.values():
            simulated.halt()
        await asyncio.gather(*(s.link.close() for s in self._speakers.values()))
        await self.hub.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def stats(self) -> FleetStats:
        speakers = list(self._speakers.values())
        counters = [s.core.counters for s in speakers]
        return FleetStats(
            speakers=len(speakers),
            online=sum(s.online for s in speakers),
            offline=sum(not s.link.wanted for s in speakers),
            commands=sum(c.commands for c in counters),
            received=sum(c.received for c in counters),
            played=sum(c.played for c in counters),
            failed=sum(c.failed for c in counters),
            rejected=sum(c.rejected for c in counters),
            preempted=sum(c.preempted for c in counters),
            malformed=sum(c.malformed for c in counters),
            duplicates=sum(c.duplicates for c in counters),
            decodes=self._library.decodes if self._library is not None else 0,
            connect_s=self.connect_s,
        )


async def run_fleet(
    config: FleetConfig,
    speakers: Sequence[SimSpeaker],
    *,
    progress: Callable[[int, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> FleetStats:
    """Run a fleet until `stop` is set (or the task is cancelled); return its final counts."""
    fleet = Fleet(config)
    await fleet.start(speakers, progress)
    try:
        await (stop or asyncio.Event()).wait()
        stats = fleet.stats()
    finally:
        await fleet.stop()
    return stats
