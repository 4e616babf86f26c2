"""Reads speakers' acks and presence from the bus and records them in batches."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from gateway.bus import Bus, Incoming
from gateway.clock import Clock
from gateway.deliveries import returning
from gateway.deliveries.acks import AckIn, apply_acks
from gateway.devicesec import security_events
from gateway.metrics import Metrics
from gateway.speakers import service as speakers
from gateway.speakers.presence import PresenceUpdate, apply_presence
from wire import contract

log = logging.getLogger(__name__)

# Distinct acks one speaker may have recorded for one command: a real speaker sends a handful
# (received, playing, a few pre-emptions and replays, played), so more means a broken or hostile
# one, whose excess is dropped without touching the database, however it is spread in time.
PER_COMMAND_MAX: Final = 32
# Exact copies of acks already recorded (QoS 1 redelivery, a speaker repeating itself) are
# recognised this far back and skipped without touching the database; the same bound holds the
# per-command counts. Both are kept as hashes, a few megabytes at this bound.
RECENT_ACKS_MAX: Final = 50_000
# Acks that match no delivery of their speaker (a command it was never sent, a made-up id): a
# speaker may have this many looked up in the database per window; past that its acks are
# dropped and counted until the window ends. Real speakers send such acks only after a
# broadcast was deleted, a handful at a time.
UNMATCHED_MAX: Final = 64
UNMATCHED_WINDOW: Final = timedelta(seconds=60)
# Reasons a message is dropped without being recorded, as /metrics names them.
DROP_REASONS: Final = ("queue_full", "sender_full", "per_command", "unmatched")


@dataclass
class _Sifted:
    """A batch's acks worth recording, and what sifting them found."""

    acks: list[tuple[str, contract.Ack]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    per_command: Counter[int] = field(default_factory=Counter)  # hash of (speaker, command)
    keys: list[int] = field(default_factory=list)  # hashes of the acks kept
    # Acks dropped unread, by (speaker, reason): recorded as security events.
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)


def _at(ms: int, now: datetime) -> datetime:
    """A speaker's clock is a claim, not a fact: never later than our own."""
    return min(datetime.fromtimestamp(ms / 1000, UTC), now)


class Intake:
    """Drains the bus in batches: one transaction per batch, so thousands of acks a second fit.

    A batch that cannot be written (database away) is kept and retried, never dropped. A speaker
    that floods acks is capped per batch and its exact repeats are skipped; one that sends
    garbage is counted; neither slows down the others.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        clock: Clock,
        *,
        city_id: int,
        city_code: str,
        batch_max: int,
        catchup_grace: timedelta = timedelta(0),
        metrics: Metrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics or Metrics()
        self._catchup_grace = catchup_grace
        self._bus = bus
        self._clock = clock
        self._city_id = city_id
        self._city_code = city_code
        self._batch_max = batch_max
        self._ids: dict[str, int] = {}
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._per_command: OrderedDict[int, int] = OrderedDict()
        # Speaker code -> (start of its window, acks of it that matched no delivery).
        self._unmatched: dict[str, tuple[datetime, int]] = {}
        # Security findings already recorded (by fingerprint): a batch retried, or a QoS 1
        # copy, adds nothing to an event's count.
        self._reported: OrderedDict[str, None] = OrderedDict()
        self.counts: Counter[str] = Counter()
        # Messages dropped without being recorded, by reason (with the bus's own drops).
        self.dropped: Counter[str] = Counter()
        self.on_change: list[asyncio.Event] = []
        self._holding = 0  # messages taken from the bus and not yet recorded

    def held(self) -> dict[str, int]:
        """How many entries each of the intake's memories holds: every one is bounded."""
        return {
            "speaker_ids": len(self._ids),
            "recent_acks": len(self._recent),
            "per_command": len(self._per_command),
            "unmatched": len(self._unmatched),
            "reported": len(self._reported),
        }

    async def drain(self, limit_s: float) -> bool:
        """Wait (at most `limit_s`) until every message the bus has handed over is recorded:
        a replica stopping on purpose leaves nothing it was given behind. True when all was."""
        try:
            async with asyncio.timeout(limit_s):
                while self._holding or not self._bus.incoming.empty():  # noqa: ASYNC110 - once, at a stop
                    await asyncio.sleep(0.05)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        while True:
            await self.step()

    async def step(self) -> None:
        """Take one batch (waiting for its first message) and record it, retrying until it is.
        The bus serves speakers in turn, so a batch holds every waiting speaker's next message
        before anyone's second."""
        batch = [await self._bus.incoming.get()]
        while len(batch) < self._batch_max:
            try:
                batch.append(self._bus.incoming.get_nowait())
            except asyncio.QueueEmpty:
                break
        self._holding = len(batch)
        delay = 0.2
        while True:
            try:
                await self.process(batch)
                self._holding = 0
                break
            except StaleDataError:
                # Another writer changed one of these deliveries first: read them again.
                self.counts["batch_conflicts"] += 1
                await asyncio.sleep(0.05)
            except Exception as exc:
                self.counts["batch_retries"] += 1
                if delay == 0.2:  # once per outage, not on every retry
                    log.warning("could not record %d messages (%s); retrying", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def process(self, batch: list[Incoming]) -> None:
        now = self._clock.now()
        self.counts["security_events"] += await security_events.record_security_events(
            self._sessions,
            batch,
            city_id=self._city_id,
            city_code=self._city_code,
            known=self._ids,
            now=now,
            reported=self._reported,
        )
        parsed: list[tuple[str, contract.Ack]] = []
        presence: list[PresenceUpdate] = []
        kept: dict[str, bool] = {}  # speaker code -> every birth of the batch kept its session
        for message in batch:
            self._parse(message, now, parsed, presence, kept)
        sifted = self._sift(parsed, now)
        acks = sifted.acks
        if not acks and not presence:
            self._remember(sifted)
            await self._record_floods(sifted, now)
            return
        births = {p.code for p in presence if p.status == "online"}
        async with self._sessions() as session:
            await self._resolve_ids(session, {code for code, _ in acks} | births)
            ack_rows = []
            codes: dict[int, str] = {}
            for code, ack in acks:
                speaker_id = self._ids.get(code)
                if speaker_id is None:
                    self.counts["unknown_speaker"] += 1
                    continue
                codes[speaker_id] = code
                ack_rows.append(
                    AckIn(
                        speaker_id=speaker_id,
                        broadcast_id=ack.broadcast_id,
                        command_id=ack.command_id,
                        status=ack.status,
                        at=_at(ack.at_ms, now),
                        reason=ack.reason,
                        audio_sha256=ack.audio_sha256,
                        played_ms=ack.played_ms,
                        level_dbfs=ack.level_dbfs,
                        at_ms=ack.at_ms,
                        receipt_sig=ack.receipt_sig,
                        live_latency_ms=ack.latency_ms,
                        live_frames_lost=ack.frames_lost,
                        live_mouth_p50_ms=ack.mouth_p50_ms,
                        live_mouth_p95_ms=ack.mouth_p95_ms,
                        already_played_as=ack.already_played_as,
                        speaker_code=code,
                    )
                )
            report = await apply_acks(session, ack_rows)
            unmatched = Counter(
                {codes[sid]: n for sid, n in report.unknown_by_speaker.items() if sid in codes}
            )
            came_online: list[int] = []
            if presence:
                came_online = await apply_presence(session, self._city_id, presence)
                # A birth means a new connection, perhaps after a broker restart that lost the
                # speaker's session (and published no will): whatever it has not acknowledged is
                # sent again, even when the record still showed it online.
                reborn = {self._ids[code] for code in births if code in self._ids}
                # Unless the broker kept its session: then what was published to it while it
                # was away is arriving from the broker now, and only what it has still not
                # acknowledged after a grace is sent again.
                resumed = {self._ids[c] for c, k in kept.items() if k and c in self._ids}
                if self._catchup_grace <= timedelta(0):
                    resumed = set()
                fresh = (reborn | set(came_online)) - resumed
                await returning.catch_up(session, sorted(fresh), now)
                await returning.catch_up_later(session, sorted(resumed), now, self._catchup_grace)
            await session.commit()
        self._metrics.observe_ack_lag(self._clock.now(), (a.at for a in ack_rows))
        self._remember(sifted)
        self._count_unmatched(unmatched, now)
        await self._record_floods(sifted, now)
        self.counts["acks_applied"] += report.applied
        self.counts["acks_unchanged"] += report.unchanged
        self.counts["acks_unknown"] += report.unknown
        self.counts["acks_illegal"] += report.illegal
        self.counts["cancel_acks"] += report.cancel_acks
        self.counts["heard"] += report.heard
        for reason, n in report.heard_refused.items():
            self.counts[f"heard_refused_{reason}"] += n
        self.counts["presence"] += len(presence)
        self.counts["came_online"] += len(came_online)

    def _sift(self, parsed: list[tuple[str, contract.Ack]], now: datetime) -> _Sifted:
        """Drop exact repeats of recorded acks (they change nothing), a flooding speaker's acks
        past its allowance for a command, and every ack of a speaker past its allowance of
        unmatched acks. Changes nothing here: a batch that cannot be written is sifted again on
        its retry."""
        sifted = _Sifted()
        seen: set[int] = set()
        for code, ack in parsed:
            if self._over_unmatched(code, now):
                sifted.counts["unmatched_dropped"] += 1
                sifted.dropped[(code, "unmatched")] += 1
                continue
            key = hash((code, ack.command_id, ack.status.value, ack.at_ms))
            if key in seen or key in self._recent:
                sifted.counts["duplicate_acks"] += 1
                sifted.counts["acks_unchanged"] += 1
                continue
            seen.add(key)
            command = hash((code, ack.command_id))
            sifted.per_command[command] += 1
            if self._per_command.get(command, 0) + sifted.per_command[command] > PER_COMMAND_MAX:
                sifted.counts["flood_dropped"] += 1
                sifted.dropped[(code, "per_command")] += 1
                continue
            sifted.acks.append((code, ack))
            sifted.keys.append(key)
        return sifted

    async def _record_floods(self, sifted: _Sifted, now: datetime) -> None:
        """A speaker's dropped acks as a security event. After the batch is written, and never
        failing it: the batch must not be recorded twice for the sake of this count."""
        try:
            await security_events.record_ack_floods(
                self._sessions, sifted.dropped, city_id=self._city_id, now=now
            )
        except Exception as exc:
            log.warning(
                "could not record %d dropped acks as events (%s)", sum(sifted.dropped.values()), exc
            )

    def _over_unmatched(self, code: str, now: datetime) -> bool:
        window = self._unmatched.get(code)
        return (
            window is not None and now - window[0] < UNMATCHED_WINDOW and window[1] >= UNMATCHED_MAX
        )

    def _count_unmatched(self, unmatched: Counter[str], now: datetime) -> None:
        for code, count in unmatched.items():
            start, seen = self._unmatched.get(code, (now, 0))
            if now - start >= UNMATCHED_WINDOW:
                start, seen = now, 0
            self._unmatched[code] = (start, seen + count)
        if len(self._unmatched) > RECENT_ACKS_MAX:
            self._unmatched = {
                code: window
                for code, window in self._unmatched.items()
                if now - window[0] < UNMATCHED_WINDOW
            }

    def _remember(self, sifted: _Sifted) -> None:
        self.counts.update(sifted.counts)
        self.dropped["per_command"] += sifted.counts["flood_dropped"]
        self.dropped["unmatched"] += sifted.counts["unmatched_dropped"]
        for key in sifted.keys:
            self._recent[key] = None
        while len(self._recent) > RECENT_ACKS_MAX:
            self._recent.popitem(last=False)
        for command, count in sifted.per_command.items():
            self._per_command[command] = self._per_command.pop(command, 0) + count
        while len(self._per_command) > RECENT_ACKS_MAX:
            self._per_command.popitem(last=False)

    def _parse(
        self,
        message: Incoming,
        now: datetime,
        acks: list[tuple[str, contract.Ack]],
        presence: list[PresenceUpdate],
        kept: dict[str, bool],
    ) -> None:
        kind = "ack" if "/ack/" in message.topic else "presence"
        try:
            city, code = contract.parse_speaker_topic(message.topic, kind)  # type: ignore[arg-type]
            if city != self._city_code:
                self.counts["other_city"] += 1
                return
            if kind == "ack":
                ack = contract.decode_ack(message.payload)
                if ack.speaker != code:
                    # A speaker may only speak for itself: the topic is what the broker's ACL
                    # ties to its credentials.
                    self.counts["forged"] += 1
                    log.warning("ack on %s claims speaker %s; ignored", code, ack.speaker)
                    return
                acks.append((code, ack))
            else:
                if not message.payload:
                    return  # a cleared retained message
                state = contract.decode_presence(message.payload)
                if state.speaker != code:
                    self.counts["forged"] += 1
                    return
                if state.status == "online":
                    kept[code] = kept.get(code, True) and state.session_present is True
                presence.append(
                    PresenceUpdate(
                        code=code,
                        status=state.status,
                        at=_at(state.at_ms, now),
                        codecs=tuple(c.value for c in state.codecs) or None,
                        firmware=state.firmware,
                        clock_offset_ms=state.clock_offset_ms,
                    )
                )
        except contract.WireError as exc:
            self.counts["malformed"] += 1
            log.info("malformed %s message on %s: %s", kind, message.topic[:120], exc)

    async def _resolve_ids(self, session: AsyncSession, codes: set[str]) -> None:
        missing = codes - self._ids.keys()
        if missing:
            self._ids.update(await speakers.speaker_ids_by_code(session, self._city_id, missing))
