"""The outbox publisher: claims due publications in the database and publishes them over MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.broadcasts.models import (
    AudioAsset,
    Broadcast,
    Publication,
    cancel_command_id,
    superseded_command_ids,
)
from gateway.bus import Bus, BusUnavailable
from gateway.clock import Clock, to_ms
from gateway.deliveries import service as deliveries
from gateway.live import service as live
from gateway.places.models import City
from gateway.settings import Settings
from gateway.signing import Signer, active_signer
from wire import contract

log = logging.getLogger(__name__)

_CODEC_ORDER = ("opus", "mp3")


@dataclass
class PublishStats:
    published: int = 0
    failed: int = 0
    abandoned: int = 0


class Publisher:
    """Publishes from the record. Any replica may run one; leases keep them from doubling up."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        settings: Settings,
        clock: Clock,
        *,
        owner: str,
        batch: int = 200,
        concurrency: int = 64,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._settings = settings
        self._clock = clock
        self._owner = owner
        self._batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        # By broadcast and its audio: a live broadcast's audio changes from the start chime to
        # the recording when the talk ends, and a late copy then carries the recording.
        self._audio: OrderedDict[tuple[str, str], tuple[contract.AudioRef, ...]] = OrderedDict()
        self._live: dict[str, contract.LiveStream | None] = {}
        self._postgres = not settings.is_sqlite
        self._signer: Signer | None = None
        self.wake = asyncio.Event()
        self.stats = PublishStats()

    async def run(self) -> None:
        failing = False
        while True:
            try:
                done = await self.publish_due()
                failing = False
            except (DBAPIError, OSError) as exc:
                # The database is away: the outbox waits in it, so say so once and keep trying.
                if not failing:
                    log.warning("publisher cannot reach the database (%s); retrying", exc)
                failing = True
                done = 0
            except Exception:
                log.exception("publisher pass failed; retrying")
                done = 0
            if done == 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self._settings.poll_interval_s)

    async def publish_due(self) -> int:
        if not self._bus.connected:
            return 0
        now = self._clock.now()
        claimed = await self._claim(now)
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self._publish(p, b, c) for p, b, c in claimed))
        await self._record_while_leased(claimed, outcomes, lease_until=self._lease_until(now))
        return len(claimed)

    def _lease_until(self, claimed_at: datetime) -> datetime:
        return claimed_at + timedelta(seconds=self._settings.publish_lease_s)

    async def _record_while_leased(
        self,
        claimed: list[tuple[Publication, Broadcast, str]],
        outcomes: list[str | None],
        *,
        lease_until: datetime,
    ) -> None:
        """Record the outcomes, retrying while the lease holds. Once it lapses another pass (here
        or on another replica) publishes the rows again: speakers drop the copies by command id,
        so a record lost to a database outage costs a re-publish, never a second play."""
        delay = 0.2
        while True:
            try:
                await self._record(claimed, outcomes)
                return
            except (DBAPIError, OSError) as exc:
                if self._clock.now() + timedelta(seconds=delay) >= lease_until:
                    log.warning("publications not recorded before their lease ended (%s)", exc)
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _claim(self, now: datetime) -> list[tuple[Publication, Broadcast, str]]:
        free = or_(Publication.lease_expires_at.is_(None), Publication.lease_expires_at < now)
        async with self._sessions() as session:
            query = (
                select(Publication.id)
                .where(Publication.state == "pending", Publication.available_at <= now, free)
                .order_by(Publication.id)
                .limit(self._batch)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            ids = list(await session.scalars(query))
            if not ids:
                return []
            # Read per batch, not cached forever, so a rotation on any replica takes effect here.
            self._signer = await active_signer(session, now)
            lease_until = self._lease_until(now)
            await session.execute(
                update(Publication)
                .where(Publication.id.in_(ids), free)
                .values(lease_owner=self._owner, lease_expires_at=lease_until)
                .execution_options(synchronize_session=False)
            )
            rows = (
                await session.execute(
                    select(Publication, Broadcast, City.code)
                    .join(Broadcast, Broadcast.id == Publication.broadcast_id)
                    .join(City, City.id == Broadcast.city_id)
                    .where(Publication.id.in_(ids), Publication.lease_owner == self._owner)
                )
            ).tuples()
            claimed = list(rows)
            # A live broadcast's start command names its stream (None once the session ended).
            self._live = {
                bid: await live.stream_of(session, bid) for bid in {b.id for _, b, _ in claimed}
            }
            for _, broadcast, _ in claimed:
                if _audio_key(broadcast) not in self._audio:
                    self._audio[_audio_key(broadcast)] = await self._audio_refs(session, broadcast)
                    while len(self._audio) > 32:
                        self._audio.popitem(last=False)
            await session.commit()
        return claimed

    async def _audio_refs(
        self, session: AsyncSession, broadcast: Broadcast
    ) -> tuple[contract.AudioRef, ...]:
        refs = []
        for codec in _CODEC_ORDER:
            sha = broadcast.audio_sha256.get(codec)
            if sha is None:
                continue
            asset = await session.get(AudioAsset, sha)
            if asset is None:
                raise LookupError(f"audio {sha} of broadcast {broadcast.id} is missing")
            if asset.size <= self._settings.inline_audio_max_bytes:
                refs.append(
                    contract.inline_audio(
                        codec=contract.Codec(codec),
                        mime_type=asset.mime_type,
                        data=asset.data,
                        duration_ms=asset.duration_ms,
                    )
                )
            else:
                refs.append(
                    contract.AudioRef(
                        codec=contract.Codec(codec),
                        mime_type=asset.mime_type,
                        sha256=asset.sha256,
                        size=asset.size,
                        duration_ms=asset.duration_ms,
                        url=f"{self._settings.public_url.rstrip('/')}/api/v1/audio/{asset.sha256}",
                    )
                )
        return tuple(refs)

    def command_for(
        self, publication: Publication, broadcast: Broadcast, city_code: str, at: datetime
    ) -> tuple[str, contract.Command]:
        kind = publication.scope_kind
        if kind == "all":
            topic = contract.command_topic_all(city_code)
            scope = contract.Scope(kind="all")
        else:
            code = publication.scope_ids[0]
            topic = {
                "district": contract.command_topic_district,
                "village": contract.command_topic_village,
                "speaker": contract.command_topic_speaker,
            }[kind](city_code, code)
            scope = contract.Scope(kind=kind, ids=tuple(publication.scope_ids))
        cancel = publication.kind == "cancel"
        command = contract.Command(
            type="cancel" if cancel else "play",
            id=cancel_command_id(broadcast.command_id) if cancel else broadcast.command_id,
            broadcast_id=broadcast.id,
            city=city_code,
            scope=scope,
            category=contract.Category(broadcast.category),
            priority=broadcast.priority,
            mode=broadcast.mode,
            audible=broadcast.mode == "live" or self._settings.test_playback == "announce",
            issued_at_ms=to_ms(at),
            expires_at_ms=to_ms(broadcast.expires_at),
            nonce=contract.new_nonce(),
            title=broadcast.title,
            text=broadcast.text,
            audio=() if cancel else self._audio[_audio_key(broadcast)],
            live=None if cancel else self._live.get(broadcast.id),
            supersedes=None if cancel else superseded_command_ids(broadcast.target),
        )
        if self._signer is not None:
            command = self._signer.sign(command)
        return topic, command

    async def _publish(
        self, publication: Publication, broadcast: Broadcast, city_code: str
    ) -> str | None:
        """Publish one row; the outcome is 'published', 'abandoned' or an error text."""
        now = self._clock.now()
        stale = broadcast.cancelled_at is not None and publication.kind == "play"
        if stale or broadcast.expires_at <= now:
            return "abandoned"
        topic, command = self.command_for(publication, broadcast, city_code, now)
        async with self._limit:
            try:
                await self._bus.publish(
                    topic,
                    contract.encode_command(command),
                    qos=contract.COMMAND_QOS,
                    expiry_s=contract.message_expiry_seconds(command, to_ms(now)),
                )
            except BusUnavailable as exc:
                return f"broker: {exc}"[:300]
        return "published"

    async def _record(
        self,
        claimed: list[tuple[Publication, Broadcast, str]],
        outcomes: list[str | None],
    ) -> None:
        now = self._clock.now()
        ack_timeout = timedelta(seconds=self._settings.ack_timeout_s)
        async with self._sessions() as session:
            for (publication, _, _), outcome in zip(claimed, outcomes, strict=True):
                row = await session.get(Publication, publication.id)
                if row is None or row.lease_owner != self._owner:
                    continue
                row.lease_owner = None
                row.lease_expires_at = None
                row.attempts += 1
                if outcome == "published":
                    row.state = "published"
                    row.published_at = now
                    if row.kind == "play":
                        await deliveries.mark_published(
                            session, row, now=now, ack_timeout=ack_timeout
                        )
                    self.stats.published += 1
                elif outcome == "abandoned":
                    row.state = "abandoned"
                    self.stats.abandoned += 1
                else:
                    row.last_error = outcome
                    backoff = min(30.0, 0.5 * 2 ** min(row.attempts, 6))
                    row.available_at = now + timedelta(seconds=backoff)
                    self.stats.failed += 1
            await session.commit()


def _audio_key(broadcast: Broadcast) -> tuple[str, str]:
    return broadcast.id, ",".join(sorted(broadcast.audio_sha256.values()))
