"""One simulated speaker: a `SpeakerCore` behind its own `Link`, and a pretend horn.

Instead of a sound card it "plays" for the audio's real duration divided by
`FleetConfig.speed`, and joins live streams as a real speaker does. Decoding is shared through
the fleet's `AudioLibrary`: the first speaker to get a clip decodes it (in a thread), the others
reuse the result by sha256, after checking the hash of their own bytes (the core does that for
inline audio).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from devices.actions import FINAL, Ack, Action, Play, Prepare, Stop
from devices.keyring import KeyLearner
from devices.link import Incoming, Link
from devices.link_settings import LinkSettings
from devices.live import Finished, LivePlayer
from devices.live_driver import LiveDriver, settle, wall_ms
from devices.simulator_config import SIMULATED_REJECT_REASON, Faults, SimSpeaker
from devices.sound import Fetcher, SoundError, decode_sound
from devices.speaker import SpeakerCore
from devices.states import MemoryJournal
from wire import contract
from wire.contract import AckStatus, FailReason

if TYPE_CHECKING:
    from devices.simulator import Fleet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Facts:
    duration_ms: int
    level_dbfs: float


class AudioLibrary:
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
            clock=lambda: contract.now_ms() + spec.clock_offset_ms,
            receiver=spec.receiver,
        )
        self.link = Link(
            fleet.hub,
            settings,
            spec.identity,
            on_message=self._on_message,
            codecs=spec.codecs,
            live=True,
            clock_offset=lambda: self.core.clock_offset.offset_ms,
        )
        self._fleet = fleet
        self._durations: dict[str, int] = {}
        # The command playing, and the timer of its end (a live stream: of its chime, then None).
        self._playing: tuple[str, asyncio.TimerHandle | None] | None = None
        # On the speaker's own clock, as a device's: its offset estimate corrects mouth to horn.
        self.streams = LiveDriver(
            on_end=self._stream_ended,
            clock=lambda: wall_ms() + spec.clock_offset_ms,
            offset_ms=lambda: self.core.clock_offset.offset_ms,
        )
        self._last_ack_at = 0.0
        # The last command that played to the end: what a receiver's 들었어요 confirms.
        self._last_played: tuple[str, str] | None = None
        self._broadcasts: dict[str, str] = {}

    @property
    def live(self) -> LivePlayer:
        return self.streams.player

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
            self.streams.frame(incoming.payload)
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
                message = self.streams.ack(action.message)
                if message.status in FINAL:
                    self._durations.pop(message.command_id, None)
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
        """Start at the command's play-at time (through this speaker's clock), or now."""
        command_id = action.command.id
        self._broadcasts[command_id] = action.command.broadcast_id
        self.streams.started(action.command)
        wait_ms = self.core.clock_offset.wait_ms(action.command.play_at_ms, self.core.now_ms())
        if action.command.play_at_ms is not None and wait_ms == 0:
            self._fleet.late_starts += 1  # ready after its play-at time (or none to wait for)
        handle = asyncio.get_running_loop().call_later(wait_ms / 1000, self._horn_on, action)
        self._playing = (action.command.id, handle)

    def _horn_on(self, action: Play) -> None:
        command_id = action.command.id
        self._fleet.started(self, action.command)
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
            self.streams.stop(command_id)

    def _join(self, command: contract.Command) -> None:
        self._playing = (command.id, None)
        self.streams.join(command)

    def _stream_ended(self, end: Finished) -> None:
        if self._playing is not None and self._playing[0] == end.command_id:
            self._playing = None
        self.run(settle(self.core, end))

    def _finished(self, command_id: str, duration_ms: int) -> None:
        self._playing = None
        if command_id in self._broadcasts:
            self._last_played = (command_id, self._broadcasts.pop(command_id))
        self.run(self.core.on_play_finished(command_id, played_ms=duration_ms))

    @property
    def last_played(self) -> tuple[str, str] | None:
        """The command and broadcast ids of the last notice that played to the end."""
        return self._last_played

    def press_heard(self, ids: tuple[str, str] | None = None) -> bool:
        """An indoor receiver's 들었어요 button: a ``heard`` ack for the last notice it played
        (or the given command and broadcast ids), signed with its receipt key. False when it is
        not a receiver, has no key or has played nothing."""
        ids = ids or self._last_played
        if self.spec.kind != "household_receiver" or self.spec.receipt_key is None or not ids:
            return False
        ack = contract.Ack(
            command_id=ids[0],
            broadcast_id=ids[1],
            speaker=self.id,
            status=AckStatus.HEARD,
            at_ms=contract.now_ms(),
        )
        self.link.publish_ack(contract.sign_heard(ack, self.spec.receipt_key))
        return True

    def tick(self) -> None:
        if self.core.queued:
            self.run(self.core.on_tick())

    def halt(self) -> None:
        if self._playing is not None:
            if self._playing[1] is not None:
                self._playing[1].cancel()
            self._playing = None
        self.streams.halt()
