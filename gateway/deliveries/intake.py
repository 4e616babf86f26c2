"""Reads speakers' acks and presence from the bus and records them in batches."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.bus import Bus, Incoming
from gateway.clock import Clock
from gateway.deliveries import service as deliveries
from gateway.devicesec import service as devicesec
from gateway.speakers import service as speakers
from wire import contract

log = logging.getLogger(__name__)


def _at(ms: int, now: datetime) -> datetime:
    """A speaker's clock is a claim, not a fact: never later than our own."""
    return min(datetime.fromtimestamp(ms / 1000, UTC), now)


class Intake:
    """Drains the bus in batches: one transaction per batch, so thousands of acks a second fit.

    A batch that cannot be written (database away) is kept and retried, never dropped.
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
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._clock = clock
        self._city_id = city_id
        self._city_code = city_code
        self._batch_max = batch_max
        self._ids: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        self.on_change: list[asyncio.Event] = []

    async def run(self) -> None:
        while True:
            batch = [await self._bus.incoming.get()]
            while len(batch) < self._batch_max:
                try:
                    batch.append(self._bus.incoming.get_nowait())
                except asyncio.QueueEmpty:
                    break
            delay = 0.2
            while True:
                try:
                    await self.process(batch)
                    break
                except Exception as exc:
                    self.counts["batch_retries"] += 1
                    log.warning("could not record %d messages (%s); retrying", len(batch), exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def process(self, batch: list[Incoming]) -> None:
        now = self._clock.now()
        self.counts["security_events"] += await devicesec.record_security_events(
            self._sessions,
            batch,
            city_id=self._city_id,
            city_code=self._city_code,
            known=self._ids,
            now=now,
        )
        acks: list[tuple[str, contract.Ack]] = []
        presence: list[speakers.PresenceUpdate] = []
        for message in batch:
            self._parse(message, now, acks, presence)
        if not acks and not presence:
            return
        async with self._sessions() as session:
            await self._resolve_ids(session, {code for code, _ in acks})
            ack_rows = []
            for code, ack in acks:
                speaker_id = self._ids.get(code)
                if speaker_id is None:
                    self.counts["unknown_speaker"] += 1
                    continue
                ack_rows.append(
                    deliveries.AckIn(
                        speaker_id=speaker_id,
                        broadcast_id=ack.broadcast_id,
                        command_id=ack.command_id,
                        status=ack.status,
                        at=_at(ack.at_ms, now),
                        reason=ack.reason,
                        audio_sha256=ack.audio_sha256,
                        played_ms=ack.played_ms,
                        level_dbfs=ack.level_dbfs,
                    )
                )
            report = await deliveries.apply_acks(session, ack_rows)
            came_online: list[int] = []
            if presence:
                came_online = await speakers.apply_presence(session, self._city_id, presence)
                await deliveries.catch_up(session, came_online, now)
            await session.commit()
        self.counts["acks_applied"] += report.applied
        self.counts["acks_unchanged"] += report.unchanged
        self.counts["acks_unknown"] += report.unknown
        self.counts["acks_illegal"] += report.illegal
        self.counts["cancel_acks"] += report.cancel_acks
        self.counts["presence"] += len(presence)
        self.counts["came_online"] += len(came_online)

    def _parse(
        self,
        message: Incoming,
        now: datetime,
        acks: list[tuple[str, contract.Ack]],
        presence: list[speakers.PresenceUpdate],
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
                presence.append(
                    speakers.PresenceUpdate(
                        code=code,
                        status=state.status,
                        at=_at(state.at_ms, now),
                        codecs=tuple(c.value for c in state.codecs) or None,
                        firmware=state.firmware,
                    )
                )
        except contract.WireError as exc:
            self.counts["malformed"] += 1
            log.info("malformed %s message on %s: %s", kind, message.topic[:120], exc)

    async def _resolve_ids(self, session: AsyncSession, codes: set[str]) -> None:
        missing = codes - self._ids.keys()
        if missing:
            self._ids.update(await speakers.speaker_ids_by_code(session, self._city_id, missing))
