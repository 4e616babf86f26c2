"""A speaker's live-stream logic: frame checks, the jitter buffer, concealment and stream endings.

No I/O, like `devices.speaker`: the caller passes the time in and carries out what comes back.
`SpeakerCore` decides *whether* a live command plays (queue, priority, acks); when it says
`Play` for a command with a ``live`` stream, the driver plays the chime and then calls
`LivePlayer.join`. From then on every frame on the live topics goes to `LivePlayer.on_frame`,
and `LivePlayer.on_tick` at `LivePlayer.wake_at_ms` at the latest.

Playout: the first frame heard (or the first of a talk spurt, after a pause) anchors the clock;
frame ``n`` plays at ``anchor + jitter_ms + (n - n0) * 20 ms``. A frame that arrives after its
slot is late: its slot was concealed and it counts as lost, as does a frame that never came, or
one that came more than ten seconds ahead of its slot (a stream faster than real time).
Latency is from the gateway's receipt of the frame (its ``at_ms``) to its slot. Mouth to horn
is from the talker's capture of the frame (its capture lag, when the talking client stamps its
audio) to the frame reaching the output: its slot plus the output's own lead (the agent keeps
its player fed ahead), the capture time put on the speaker's clock (`devices.clock.correction_ms`).

The stream ends ``played`` after the slot of the last frame an ``end`` (reason ``stopped``)
names; ``interrupted`` on any other end reason, or when no frame came for ``stall_ms`` (paused,
or before the first frame: ``idle_ms``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from devices.clock import correction_ms
from devices.jitter import Adaptive, DelayWindow
from wire import contract
from wire.contract import EndReason, LiveFrame, LiveKind

# Frames kept waiting for their slot; at 20 ms this is ten seconds, far beyond any jitter target.
_MAX_BUFFERED: Final = 500
# Sequence numbers remembered one by one (for duplicates); older ones are only counted, so a
# talk of any length costs the same memory. A frame this far behind is long past its slot.
_WINDOW: Final = 2 * _MAX_BUFFERED
# Sessions whose key and ending a speaker remembers after leaving them (pre-emption, restart).
_REMEMBER: Final = 16
_BIN_MS: Final = 1
_MAX_LATENCY_MS: Final = 5000
_T = TypeVar("_T")


class Histogram:
    """Latencies in 1 ms bins (the last bin holds everything longer): small, and mergeable."""

    def __init__(self) -> None:
        self.counts = [0] * (_MAX_LATENCY_MS + 1)
        self.total = 0

    def add(self, value_ms: float) -> None:
        index = min(_MAX_LATENCY_MS, max(0, int(value_ms // _BIN_MS)))
        self.counts[index] += 1
        self.total += 1

    def merge(self, other: Histogram) -> None:
        for index, count in enumerate(other.counts):
            if count:
                self.counts[index] += count
        self.total += other.total

    def percentile(self, fraction: float) -> int | None:
        if self.total == 0:
            return None
        wanted = max(1, round(fraction * self.total))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= wanted:
                return index * _BIN_MS
        return _MAX_LATENCY_MS


@dataclass(frozen=True, slots=True)
class Slot:
    """One 20 ms slot of playout: the Opus packet to play, or None to conceal a lost frame, and
    when it is due."""

    seq: int
    payload: bytes | None = field(repr=False)
    at_ms: float = 0.0


class JitterBuffer:
    """Orders frames and schedules each into its 20 ms slot; times are in milliseconds."""

    def __init__(
        self,
        *,
        target_ms: float,
        frame_ms: int = 20,
        keep_payloads: bool = True,
        adaptive: Adaptive | None = None,
    ) -> None:
        self.target_ms = float(target_ms)
        self.frame_ms = frame_ms
        self._keep = keep_payloads
        self._window = DelayWindow(adaptive) if adaptive is not None else None
        self._passed = 0  # slots before this one were played (or concealed) already
        # seq -> (at_ms, capture on this clock or None) of frames waiting for their slot
        self._pending: dict[int, tuple[int, float | None]] = {}
        self.target_max_ms = self.target_ms
        self._anchor_seq: int | None = None
        self._anchor_at = 0.0
        self._next = 0  # the next slot to hand out (with keep_payloads)
        self._buffer: dict[int, bytes] = {}
        self._on_time: set[int] = set()  # within _WINDOW of the highest
        self._settled = 0  # on time, and older than the window
        self.first_seq: int | None = None
        self._skipped = 0  # slots of pauses: nothing was said, nothing is owed
        self.highest = -1
        self.received = 0
        self.late = 0
        self.early = 0
        self.duplicates = 0
        self._latency = Histogram()
        self._mouth = Histogram()

    @property
    def adaptive(self) -> bool:
        return self._window is not None

    @property
    def latency(self) -> Histogram:
        """Latencies of the frames played, or waiting to play at their slot as it stands."""
        for seq in list(self._pending):
            self._played(seq)
        return self._latency

    @property
    def mouth(self) -> Histogram:
        """From capture to slot, of the frames that said when they were captured."""
        _ = self.latency
        return self._mouth

    def _played(self, seq: int) -> None:
        at_ms, captured = self._pending.pop(seq)
        slot = self.play_at(seq)
        self._latency.add(slot - at_ms)
        if captured is not None:
            self._mouth.add(slot - captured)

    @property
    def learned_ms(self) -> float:
        """Where the next stream on this network should start: the end of a talk is a boundary
        like a spurt's start, so the target settles as it would there."""
        return self._window.settled(self.target_ms) if self._window else self.target_ms

    def take_latency(self) -> tuple[Histogram, Histogram]:
        """The latency and mouth-to-slot histograms so far; the buffer starts new ones."""
        latency, mouth = self.latency, self._mouth
        self._latency, self._mouth = Histogram(), Histogram()
        return latency, mouth

    def play_at(self, seq: int) -> float:
        assert self._anchor_seq is not None
        return self._anchor_at + self.target_ms + (seq - self._anchor_seq) * self.frame_ms

    def push(
        self,
        seq: int,
        at_ms: int,
        payload: bytes,
        now: float,
        *,
        restart: bool,
        captured_ms: float | None = None,
    ) -> bool:
        """Take a frame that arrived at `now`; False when it came too late for its slot, or
        too early (the stream comes faster than real time). `captured_ms`: when the talker
        captured it, on this buffer's clock (None: unknown)."""
        self._settle(now)
        anew = self._anchor_seq is None or (restart and self._starts_anew(seq, now))
        if anew:
            self._anchor(seq, now)
        assert self._anchor_seq is not None
        if self._window is not None:
            self._window.observe(seq, now, self.frame_ms)
        if anew:
            if self.first_seq is None:
                self.first_seq = self._next = seq
            else:
                self._skipped += max(0, seq - self.highest - 1)
                if self._next > self.highest:  # nothing still waits to be handed out
                    self._next = max(self._next, seq)
        elif seq < self._anchor_seq or seq in self._on_time:
            self.duplicates += seq in self._on_time
            return False
        elif seq < self.highest - _WINDOW:
            self.late += 1
            return False
        slot = self.play_at(seq)
        if (now > slot or seq < self._passed) and not self._grow(seq, now, now - slot):
            self.late += 1
            return False
        slot = self.play_at(seq)
        if slot - now > _MAX_BUFFERED * self.frame_ms or (
            self._keep and len(self._buffer) >= _MAX_BUFFERED
        ):
            # Far ahead of real time: dropped (and counted lost) rather than held without bound.
            self.early += 1
            return False
        self.received += 1
        self.highest = max(self.highest, seq)
        self._on_time.add(seq)
        if len(self._on_time) > 2 * _WINDOW:
            floor = self.highest - _WINDOW
            old = {s for s in self._on_time if s < floor}
            self._on_time -= old
            self._settled += len(old)
        self._pending[seq] = (at_ms, captured_ms)
        if self._keep:
            self._buffer[seq] = payload
        return True

    def _anchor(self, seq: int, now: float) -> None:
        """Take `seq` arriving at `now` as the start of a talk spurt's timeline. An adaptive
        buffer sets its target here: nothing plays yet, so nothing is cut."""
        _ = self.latency  # what waits keeps the slot it had
        if self._window is not None and self._anchor_seq is not None:
            self.target_ms = self._window.settled(self.target_ms)
            self.target_max_ms = max(self.target_max_ms, self.target_ms)
            self._window.new_spurt()
        self._anchor_seq, self._anchor_at = seq, now

    def _grow(self, seq: int, now: float, late_by: float) -> bool:
        """A frame came after its slot: an adaptive buffer lengthens its target at once. The
        slots already handed out (or, without payloads, due with their frame there) stay
        played; the others move later, so after a stall the talk goes on where it stopped.
        True when `seq` itself can still play."""
        if self._window is None or self._anchor_seq is None or late_by <= 0:
            return False
        if self._keep:
            passed = self._next
        else:
            due = (now - self._anchor_at - self.target_ms) // self.frame_ms
            passed = min(self.highest + 1, self._anchor_seq + int(due) + 1)
        self._passed = max(self._passed, passed)
        grown = self._window.grown(self.target_ms, late_by)
        self.target_ms = grown
        self.target_max_ms = max(self.target_max_ms, grown)
        return seq >= self._passed and self.play_at(seq) >= now

    def _settle(self, now: float) -> None:
        """Latencies of the frames whose slot has come: final, whatever the target does next."""
        if not self._pending or self._anchor_seq is None:
            return
        for seq in [seq for seq in self._pending if self.play_at(seq) <= now]:
            self._played(seq)

    def _starts_anew(self, seq: int, now: float) -> bool:
        """A talk spurt's first frame takes a new anchor when, on the current one, it would be
        late or leave less than the target: after a pause. A spurt that follows what is still
        waiting to play keeps the timeline, so flagged frames cannot pull it ahead."""
        return seq > self.highest and self.play_at(seq) < now + self.target_ms

    def lost_until(self, last_seq: int) -> int:
        """Frames up to `last_seq` that did not play (never came, or came late)."""
        if self.first_seq is None:
            return 0
        expected = last_seq - self.first_seq + 1 - self._skipped
        on_time = self._settled + sum(1 for s in self._on_time if s <= last_seq)
        return max(0, expected - on_time)

    @property
    def remembered(self) -> int:
        """Sequence numbers held one by one (bounded, whatever the length of the talk)."""
        return len(self._on_time)

    def due(self, now: float) -> list[Slot]:
        """Slots whose time has come, in order (with keep_payloads); gaps are concealed."""
        if self._anchor_seq is None:
            return []
        self._settle(now)
        slots: list[Slot] = []
        while self._next <= self.highest and self.play_at(self._next) <= now:
            slots.append(
                Slot(self._next, self._buffer.pop(self._next, None), self.play_at(self._next))
            )
            self._next += 1
        return slots

    def end_at(self, last_seq: int) -> float | None:
        """When the slot of `last_seq` is over."""
        if self._anchor_seq is None:
            return None
        return self.play_at(max(last_seq, self._anchor_seq)) + self.frame_ms


@dataclass(frozen=True, slots=True)
class Finished:
    """The stream of `command_id` ended: report `SpeakerCore.on_play_finished` with
    `played_ms`, or, when not `played`, `on_play_failed(FailReason.INTERRUPTED)`."""

    command_id: str
    played: bool
    played_ms: int


@dataclass(frozen=True, slots=True)
class Report:
    """What a live command's final ack says about the stream; mouth to horn is None when no
    frame said when it was captured."""

    frames_received: int
    frames_lost: int
    latency_ms: int | None
    mouth_p50_ms: int | None = None
    mouth_p95_ms: int | None = None


@dataclass
class _Joined:
    command_id: str
    stream: contract.LiveStream
    key: bytes
    joined_at: float
    buffer: JitterBuffer
    last_heard: float
    paused: bool = False
    last_seq: int | None = None  # from the end frame
    reason: EndReason | None = None


@dataclass
class Counters:
    frames: int = 0
    forged: int = 0
    malformed: int = 0
    foreign: int = 0  # frames of a session this speaker is not playing


class LivePlayer:
    """One speaker's live streams: at most one playing (the horn plays one thing at a time)."""

    def __init__(
        self,
        *,
        keep_payloads: bool = False,
        jitter_ms: int | None = None,
        adaptive: Adaptive | None = None,
        offset_ms: Callable[[], int | None] | None = None,
        output_lead_ms: int | Callable[[], int] = 0,
    ) -> None:
        """`offset_ms`: this clock minus the gateway's, as estimated (`devices.clock`);
        `output_lead_ms`: how long after its slot a frame is heard (the player's lead, or what
        tells it as it is learned)."""
        self.counters = Counters()
        self.reports: OrderedDict[str, Report] = OrderedDict()  # command id -> its stream's end
        self._keep = keep_payloads
        self._jitter_ms = jitter_ms
        self._adaptive = adaptive
        self._offset_ms = offset_ms
        self._lead_ms = output_lead_ms
        # What the last stream's buffer learned of this speaker's network: the next one starts
        # there, so a jittery link does not cost the first seconds of every talk.
        self.learned_ms: float | None = None
        self._current: _Joined | None = None
        self._ended: OrderedDict[str, EndReason] = OrderedDict()
        self._keys: OrderedDict[str, bytes] = OrderedDict()
        # Ends of sessions not joined yet (the chime still playing, or queued): checked against
        # the key of the signed command when it is joined.
        self._unchecked_ends: OrderedDict[str, LiveFrame] = OrderedDict()
        # Every played frame of every stream, for measurements: from the gateway, and from the
        # talker's microphone to the slot.
        self.latency = Histogram()
        self.mouth = Histogram()

    @property
    def playing(self) -> str | None:
        return self._current.command_id if self._current is not None else None

    @property
    def buffer(self) -> JitterBuffer | None:
        return self._current.buffer if self._current is not None else None

    @property
    def wake_at_ms(self) -> float | None:
        """Call `on_tick` by then at the latest (a stall, or the end of the last slot)."""
        joined = self._current
        if joined is None:
            return None
        if joined.last_seq is not None:
            end = joined.buffer.end_at(joined.last_seq)
            return end if end is not None else joined.last_heard
        # Before the first word, as in a pause, a person may take their time.
        quiet = joined.paused or joined.buffer.first_seq is None
        wait = joined.stream.idle_ms if quiet else joined.stream.stall_ms
        return joined.last_heard + wait

    def join(self, command: contract.Command, now: float) -> list[Finished]:
        """Start playing the stream of a live command (after its chime)."""
        stream = command.live
        if stream is None:
            raise ValueError("not a live command")
        self.leave()
        key = stream.key_bytes()
        self._remember(self._keys, stream.session, key)
        early = self._unchecked_ends.pop(stream.session, None)
        if early is not None and early.verify(key):
            self._remember(self._ended, stream.session, _reason(early.flags))
        ended = self._ended.get(stream.session)
        if ended is not None:
            # It ended while this speaker waited (a higher priority played meanwhile).
            self.reports[command.id] = Report(0, 0, None)
            return [Finished(command.id, played=False, played_ms=0)]
        target = float(self._jitter_ms or stream.jitter_ms)
        if self._adaptive is not None:
            target = self._adaptive.clamp(self.learned_ms or target)
        self._current = _Joined(
            command_id=command.id,
            stream=stream,
            key=key,
            joined_at=now,
            buffer=JitterBuffer(
                target_ms=target, keep_payloads=self._keep, adaptive=self._adaptive
            ),
            last_heard=now,
        )
        return []

    def leave(self) -> Report | None:
        """Stop playing the current stream (pre-empted, cancelled): no `Finished` follows."""
        joined, self._current = self._current, None
        if joined is None:
            return None
        return self._report(joined, joined.buffer.highest)

    def on_frame(self, data: bytes, now: float) -> list[Finished]:
        self.counters.frames += 1
        try:
            frame = contract.decode_live_frame(data)
        except contract.WireError:
            self.counters.malformed += 1
            return []
        joined = self._current
        if joined is None or frame.session != joined.stream.session:
            return self._aside(frame)
        if not frame.verify(joined.key):
            self.counters.forged += 1
            return []
        joined.last_heard = now
        if frame.kind is LiveKind.AUDIO:
            joined.paused = False
            captured = frame.captured_ms
            joined.buffer.push(
                frame.seq,
                frame.at_ms,
                frame.payload,
                now,
                restart=frame.starts_spurt,
                captured_ms=None if captured is None else self._on_this_clock(captured),
            )
            return []
        if frame.kind is LiveKind.PAUSE:
            joined.paused = True
            return []
        return self._end(joined, frame, now)

    def on_tick(self, now: float) -> list[Finished]:
        joined = self._current
        if joined is None:
            return []
        wake = self.wake_at_ms
        if wake is None or now < wake:
            return []
        if joined.last_seq is not None:
            return [self._finish(joined, played=joined.reason is EndReason.STOPPED)]
        # Silence for too long: the gateway or the network is gone. End on our own.
        self._remember(self._ended, joined.stream.session, EndReason.FAILED)
        return [self._finish(joined, played=False)]

    def due(self, now: float) -> list[Slot]:
        """Slots to play now (a player with keep_payloads)."""
        return self._current.buffer.due(now) if self._current is not None else []

    # -- internals -----------------------------------------------------------------------

    def _aside(self, frame: LiveFrame) -> list[Finished]:
        """A frame of a session not playing here: remember its end, if it is authentic."""
        self.counters.foreign += 1
        if frame.kind is not LiveKind.END:
            return []
        key = self._keys.get(frame.session)
        if key is None:
            self._remember(self._unchecked_ends, frame.session, frame)
        elif frame.verify(key):
            self._remember(self._ended, frame.session, _reason(frame.flags))
        return []

    def _end(self, joined: _Joined, frame: LiveFrame, now: float) -> list[Finished]:
        reason = _reason(frame.flags)
        self._remember(self._ended, joined.stream.session, reason)
        joined.reason = reason
        if reason is not EndReason.STOPPED or joined.buffer.first_seq is None:
            return [self._finish(joined, played=reason is EndReason.STOPPED)]
        joined.last_seq = frame.seq
        return self.on_tick(now)

    def _finish(self, joined: _Joined, *, played: bool) -> Finished:
        self._current = None
        last = joined.last_seq if joined.last_seq is not None else joined.buffer.highest
        report = self._report(joined, last)
        self.reports[joined.command_id] = report
        while len(self.reports) > _REMEMBER:
            self.reports.popitem(last=False)
        buffer = joined.buffer
        played_ms = 0
        if buffer.first_seq is not None:
            played_ms = max(0, last - buffer.first_seq + 1) * buffer.frame_ms
        return Finished(joined.command_id, played=played, played_ms=played_ms)

    def _report(self, joined: _Joined, last_seq: int) -> Report:
        buffer = joined.buffer
        latency, mouth = buffer.take_latency()
        if buffer.first_seq is not None:
            self.learned_ms = buffer.learned_ms
        report = Report(
            frames_received=buffer.received,
            frames_lost=buffer.lost_until(last_seq),
            latency_ms=latency.percentile(0.5),
            mouth_p50_ms=_heard(mouth.percentile(0.5), self._lead()),
            mouth_p95_ms=_heard(mouth.percentile(0.95), self._lead()),
        )
        self.latency.merge(latency)
        self.mouth.merge(mouth)
        return report

    def _lead(self) -> int:
        return self._lead_ms() if callable(self._lead_ms) else self._lead_ms

    def _on_this_clock(self, gateway_ms: int) -> float:
        offset = self._offset_ms() if self._offset_ms is not None else None
        return gateway_ms + correction_ms(offset)

    @staticmethod
    def _remember(table: OrderedDict[str, _T], session: str, value: _T) -> None:
        table[session] = value
        table.move_to_end(session)
        while len(table) > _REMEMBER:
            table.popitem(last=False)


def _heard(slot_ms: int | None, lead_ms: int) -> int | None:
    return None if slot_ms is None else slot_ms + lead_ms


def _reason(flags: int) -> EndReason:
    try:
        return EndReason(flags)
    except ValueError:
        return EndReason.FAILED


def with_report(ack: contract.Ack, report: Report | None) -> contract.Ack:
    """The final ack of a live command, with what the speaker heard of the stream."""
    if report is None:
        return ack
    return ack.model_copy(
        update={
            "frames_received": report.frames_received,
            "frames_lost": report.frames_lost,
            "latency_ms": report.latency_ms,
            "mouth_p50_ms": report.mouth_p50_ms,
            "mouth_p95_ms": report.mouth_p95_ms,
        }
    )
