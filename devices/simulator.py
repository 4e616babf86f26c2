"""A fleet of simulated speakers in one process: real MQTT 5 connections, real acks, no horns.

Every speaker is a `SpeakerCore` behind its own `Link` (own client id, persistent session,
birth, will and heartbeats), exactly as the device agent runs one. Instead of a sound card it
"plays" for the audio's real duration divided by `FleetConfig.speed`. Decoding is shared: the
first speaker to get a clip decodes it (in a thread), the others reuse the result by sha256,
after checking the hash of their own bytes (the core does that for inline audio).

Faults are chosen per speaker from `FleetConfig.seed`, so a run is repeatable: speakers that
stay offline, that reject everything, that ack late, or that lose their connection mid-play.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import resource
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import httpx

from devices.actions import Ack, Action, Play, Prepare, Stop
from devices.hub import Hub
from devices.keyring import FetchRing, KeyLearner, http_keyring
from devices.link import Incoming, Link
from devices.link_settings import BrokerAddress, LinkSettings, tls_context
from devices.live import Finished, LivePlayer, with_report
from devices.sound import Fetcher, SoundError, decode_sound
from devices.speaker import SpeakerCore
from devices.states import MemoryJournal
from wire import contract
from wire.contract import AckStatus, Codec, FailReason, SpeakerIdentity

log = logging.getLogger(__name__)

SIMULATED_REJECT_REASON: Final = "simulated_fault"
# Acks after which a command id never plays on this speaker.
_FINAL: Final = frozenset({AckStatus.PLAYED, AckStatus.FAILED, AckStatus.REJECTED})
_TICK_S: Final = 5.0
# A long demo must not grow without bound: forget commands an hour after they expired.
_PRUNE_EVERY_S: Final = 600.0
_KEEP_AFTER_EXPIRY_MS: Final = 3600 * 1000


class FleetError(Exception):
    """The fleet could not start (no speaker could reach the broker)."""


@dataclass(frozen=True)
class SimSpeaker:
    """One speaker to simulate: where it sits and what it can play."""

    identity: SpeakerIdentity
    codecs: tuple[str, ...] = (Codec.OPUS.value, Codec.MP3.value)
    kind: str = "loudspeaker"
    # Its own Ed25519 receipt key (raw private half): its ``played`` acks carry signed receipts.
    receipt_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "codecs", tuple(Codec(c) for c in self.codecs))


def with_receipt_keys(speakers: Sequence[SimSpeaker]) -> list[SimSpeaker]:
    """The speakers, each with a fresh receipt key of its own (as a real one makes at its
    installation); enroll the public halves (`receipt_public_keys`) with the gateway."""
    return [dataclasses.replace(s, receipt_key=contract.new_receipt_key()[0]) for s in speakers]


def receipt_public_keys(speakers: Sequence[SimSpeaker]) -> dict[str, dict[str, str]]:
    """Speaker code -> its enrollment (base64 receipt public key and proof of possession), the
    ``keys`` of ``PUT /api/v1/speakers/receipt-keys``."""
    return {
        s.identity.speaker: contract.receipt_key_enrollment(
            s.receipt_key, s.identity.city, s.identity.speaker
        )
        for s in speakers
        if s.receipt_key is not None
    }


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    mqtt_url: str  # mqtt:// or mqtts://, optionally with user:password@
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Per-speaker MQTT credentials (a broker with one user per speaker); overrides the above.
    credentials: Callable[[SpeakerIdentity], tuple[str, str | None]] | None = None
    ca_file: str | None = None
    speed: float = 1.0  # 10: a 30 s message "plays" in 3 s
    offline_ratio: float = 0.0  # never connect (until go_online)
    reject_ratio: float = 0.0  # answer every command "rejected"
    slow_ack_ratio: float = 0.0  # send every ack slow_ack_s late
    slow_ack_s: float = 5.0
    drop_mid_play_ratio: float = 0.0  # lose the connection halfway through each play
    heartbeat_s: float = 30.0
    keepalive_s: int = 60
    session_expiry_s: int = 600
    seed: int = 0
    connect_concurrency: int = 128
    connect_timeout_s: float = 15.0
    public_keys: Mapping[str, bytes] | None = None  # require signed commands
    # Where rotated keys are learned from (the trust anchor stays `public_keys`): by default the
    # key ring of `gateway_url`, fetched once for the whole fleet.
    keyring: FetchRing | None = None
    gateway_url: str | None = None  # the only origin audio is fetched from (with audio_token)
    audio_token: str | None = field(default=None, repr=False)
    firmware: str = "maeul-sim/1"

    def __post_init__(self) -> None:
        BrokerAddress.parse(self.mqtt_url)
        if not self.speed > 0:
            raise ValueError("speed must be positive")
        for name in ("offline_ratio", "reject_ratio", "slow_ack_ratio", "drop_mid_play_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.connect_concurrency < 1:
            raise ValueError("connect_concurrency must be at least 1")


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


@dataclass(frozen=True)
class Faults:
    offline: bool = False
    reject: bool = False
    slow_ack: bool = False
    drop_mid_play: bool = False


@dataclass(frozen=True)
class _Facts:
    duration_ms: int
    level_dbfs: float


class _AudioLibrary:
    """Decoded clips by sha256, shared by the whole fleet (bounded, least recently used out)."""

    def __init__(self, fetcher: Fetcher, *, limit: int = 64) -> None:
        self._fetcher = fetcher
        self._limit = limit
        self._facts: OrderedDict[str, asyncio.Future[_Facts]] = OrderedDict()
        self.decodes = 0

    def prepare(self, audio: contract.AudioRef, data: bytes | None) -> asyncio.Future[_Facts]:
        """`data`: bytes the caller already checked against `audio.sha256`; None to fetch."""
        cached = self._facts.get(audio.sha256)
        failed = cached is not None and cached.done() and (cached.cancelled() or cached.exception())
        if cached is not None and not failed:
            self._facts.move_to_end(audio.sha256)
            return cached
        future = asyncio.ensure_future(self._load(audio, data))
        self._facts[audio.sha256] = future
        while len(self._facts) > self._limit:
            self._facts.popitem(last=False)
        return future

    async def _load(self, audio: contract.AudioRef, data: bytes | None) -> _Facts:
        if data is None:
            data = await self._fetcher.fetch(audio)
        self.decodes += 1
        sound = await asyncio.to_thread(decode_sound, data)
        return _Facts(sound.duration_ms, sound.level_dbfs)


class SimulatedSpeaker:
    """One simulated speaker: its core, its link and its pretend horn."""

    def __init__(
        self,
        fleet: Fleet,
        spec: SimSpeaker,
        faults: Faults,
        settings: LinkSettings,
        verify: contract.SignatureCheck | None,
    ) -> None:
        self.spec = spec
        self.faults = faults
        self.journal = MemoryJournal()
        self.core = SpeakerCore(
            spec.identity,
            codecs=spec.codecs,
            journal=self.journal,
            verify=verify,
            receipt_key=spec.receipt_key,
        )
        self.link = Link(
            fleet.hub,
            settings,
            spec.identity,
            on_message=self._on_message,
            codecs=spec.codecs,
            live=True,
        )
        self._fleet = fleet
        self._durations: dict[str, int] = {}
        # The command playing, and the timer of its end (a live stream: of its chime, then None).
        self._playing: tuple[str, asyncio.TimerHandle | None] | None = None
        self.live = LivePlayer()
        self._live_ids: set[str] = set()
        self._wake: tuple[float, asyncio.TimerHandle] | None = None
        self._last_ack_at = 0.0

    @property
    def id(self) -> str:
        return self.spec.identity.speaker

    @property
    def online(self) -> bool:
        return self.link.online

    @property
    def received(self) -> int:
        return self.core.counters.received

    @property
    def played(self) -> int:
        return self.core.counters.played

    @property
    def rejected(self) -> int:
        return self.core.counters.rejected

    @property
    def preempted(self) -> int:
        return self.core.counters.preempted

    async def go_offline(self) -> None:
        """Vanish as a power cut would: the broker publishes the will and keeps the session."""
        await self.link.go_offline()

    async def go_online(self) -> bool:
        """Come back; the broker hands over the commands it kept meanwhile."""
        return await self.link.connect()

    def _on_message(self, incoming: Incoming) -> None:
        if contract.is_live_topic(incoming.topic):
            self._on_live(self.live.on_frame(incoming.payload, _wall_ms()))
            return
        keys = self._fleet.keys_for(self.spec.identity.city)
        if keys is not None and keys.unknown(incoming.payload):
            self._fleet.spawn(self._settle_then_handle(keys, incoming.payload), f"keys-{self.id}")
            return
        self._handle(incoming.payload)

    def _handle(self, payload: bytes) -> None:
        if self.faults.reject:
            actions = self.core.refuse(payload, SIMULATED_REJECT_REASON)
        else:
            actions = self.core.on_command(payload)
        self.run(actions)

    async def _settle_then_handle(self, keys: KeyLearner, payload: bytes) -> None:
        """Hold a command under a key this speaker does not trust until the fleet has asked the
        gateway's key ring since it arrived (one fetch for everyone), then hand it to the core."""
        await keys.settle(payload, self.id)
        self._handle(payload)

    def run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Ack):
                message = action.message
                if message.status in _FINAL:
                    self._durations.pop(message.command_id, None)
                    if message.command_id in self._live_ids:
                        self._live_ids.discard(message.command_id)
                        message = with_report(message, self.live.reports.get(message.command_id))
                self._send(message)
            elif isinstance(action, Prepare):
                future = self._fleet.library.prepare(action.audio, action.data)
                future.add_done_callback(partial(self._prepared, action.command_id))
            elif isinstance(action, Play):
                self._play(action)
            elif isinstance(action, Stop):
                # Cancelled or pre-empted alike, the sound stops now; a pre-empted command keeps
                # its prepared audio and plays again from the start when the core says so.
                self._stop(action.command_id)

    def _send(self, ack: contract.Ack) -> None:
        if not self.faults.slow_ack:
            self.link.publish_ack(ack)
            return
        loop = asyncio.get_running_loop()
        # Strictly increasing times keep this speaker's acks in order.
        when = max(loop.time() + self._fleet.config.slow_ack_s, self._last_ack_at + 1e-6)
        self._last_ack_at = when
        loop.call_at(when, self.link.publish_ack, ack)

    def _prepared(self, command_id: str, future: asyncio.Future[_Facts]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            facts = future.result()
            self._durations[command_id] = facts.duration_ms
            actions = self.core.on_prepared(
                command_id, duration_ms=facts.duration_ms, level_dbfs=facts.level_dbfs
            )
        elif isinstance(error, SoundError):
            actions = self.core.on_prepare_failed(command_id, error.reason)
        else:
            log.error("speaker %s: preparing audio failed: %r", self.id, error)
            actions = self.core.on_prepare_failed(command_id, FailReason.UNDECODABLE)
        self.run(actions)

    def _play(self, action: Play) -> None:
        command_id = action.command.id
        if action.command.live is not None:
            self._live_ids.add(command_id)
        # Kept until the command ends: a pre-empted command is played again from the start.
        duration_ms = self._durations.get(command_id, action.audio.duration_ms)
        loop = asyncio.get_running_loop()
        delay = duration_ms / 1000 / self._fleet.config.speed
        if action.command.live is not None:
            # The chime first; then the stream, in real time whatever the fleet's speed.
            handle = loop.call_later(delay, self._join, action.command)
        else:
            handle = loop.call_later(delay, self._finished, command_id, duration_ms)
        self._playing = (command_id, handle)
        if self.faults.drop_mid_play:
            loop.call_later(delay / 2, self.link.drop)

    def _stop(self, command_id: str) -> None:
        if self._playing is not None and self._playing[0] == command_id:
            if self._playing[1] is not None:
                self._playing[1].cancel()
            self._playing = None
            if self.live.playing == command_id:
                self.live.leave()

    def _join(self, command: contract.Command) -> None:
        self._playing = (command.id, None)
        self._on_live(self.live.join(command, _wall_ms()))

    def _on_live(self, finished: list[Finished]) -> None:
        for end in finished:
            if self._playing is not None and self._playing[0] == end.command_id:
                self._playing = None
            if end.played:
                self.run(self.core.on_play_finished(end.command_id, played_ms=end.played_ms))
            else:
                self.run(self.core.on_play_failed(end.command_id, FailReason.INTERRUPTED))
        wake = self.live.wake_at_ms
        if wake is not None and (self._wake is None or wake < self._wake[0]):
            if self._wake is not None:
                self._wake[1].cancel()
            delay = max(0.0, (wake - _wall_ms()) / 1000)
            self._wake = (wake, asyncio.get_running_loop().call_later(delay, self._woken))

    def _woken(self) -> None:
        self._wake = None
        self._on_live(self.live.on_tick(_wall_ms()))

    def _finished(self, command_id: str, duration_ms: int) -> None:
        self._playing = None
        self.run(self.core.on_play_finished(command_id, played_ms=duration_ms))

    def tick(self) -> None:
        if self.core.queued:
            self.run(self.core.on_tick())

    def halt(self) -> None:
        if self._playing is not None:
            if self._playing[1] is not None:
                self._playing[1].cancel()
            self._playing = None
        if self._wake is not None:
            self._wake[1].cancel()
            self._wake = None
        self.live.leave()


def _wall_ms() -> float:
    # Wall-clock milliseconds, as a live frame's at_ms (the gateway's receipt) is stamped.
    return time.time() * 1000


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit: one descriptor per speaker."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


def choose_faults(ids: Sequence[str], config: FleetConfig) -> dict[str, Faults]:
    """Which speakers misbehave, and how: the same ids for the same seed and speaker set."""
    ordered = sorted(ids)

    def pick(ratio: float, salt: str) -> frozenset[str]:
        count = round(ratio * len(ordered))
        return frozenset(random.Random(f"{config.seed}:{salt}").sample(ordered, count))

    offline = pick(config.offline_ratio, "offline")
    reject = pick(config.reject_ratio, "reject")
    slow = pick(config.slow_ack_ratio, "slow_ack")
    drop = pick(config.drop_mid_play_ratio, "drop_mid_play")
    return {
        i: Faults(
            offline=i in offline, reject=i in reject, slow_ack=i in slow, drop_mid_play=i in drop
        )
        for i in ordered
    }


class Fleet:
    """Simulated speakers sharing one event loop, one `Hub` and one decoded-audio cache."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.hub = Hub(connect_concurrency=config.connect_concurrency)
        self.connect_s: float | None = None
        self._speakers: dict[str, SimulatedSpeaker] = {}
        self._http: httpx.AsyncClient | None = None
        self._library: _AudioLibrary | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._keys: dict[str, KeyLearner] = {}
        self._verify: contract.SignatureCheck | None = None
        self._keyring: FetchRing | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def library(self) -> _AudioLibrary:
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
        self._library = _AudioLibrary(fetcher)
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
