"""The outbox publisher: claims due publications in the database and publishes them over MQTT.

A pass claims a batch of rows under a lease, reads everything their commands need into the
claimed items themselves (nothing a batch can outgrow), publishes them, and records each outcome
as soon as its publish returns, in small transactions while the rest are still in flight. An
outcome that cannot be written yet stays with the publisher and is written before anything new
is claimed, so a failing pass never hands the same row to the broker twice. Only a replica that
dies between the publish and the write loses outcomes: its lease lapses and another publishes
those rows again, which speakers drop by command id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.broadcasts import language_audio
from gateway.broadcasts.audio_links import AudioLinks
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
from gateway.deliveries.sweep import PLAY_GRACE
from gateway.live import service as live
from gateway.logs import about_broadcast
from gateway.metrics import Metrics
from gateway.places.models import City
from gateway.settings import Settings
from gateway.signing import KeySeal, Signer, active_signer
from wire import contract

log = logging.getLogger(__name__)

_CODEC_ORDER = ("opus", "mp3")
# A cancel may come after the broadcast's own expiry (a long message still playing): it is
# signed valid for as long as the audio could still be playing from the moment it was asked.
CANCEL_GRACE: Final = PLAY_GRACE
# Audio references kept between passes, so a broadcast retried speaker by speaker is read once.
# Only a saving: each pass holds its own references, whatever this cache evicts.
AUDIO_CACHE_MAX: Final = 32
PUBLISHED: Final = "published"
ABANDONED: Final = "abandoned"
SUPERSEDED: Final = "superseded"
# A live broadcast's play command whose session has ended: a live talk is heard now or not at
# all, never later as an ordinary broadcast of its chime or of what was said.
LIVE_ENDED: Final = "live_ended"
_GIVEN_UP: Final = (ABANDONED, SUPERSEDED, LIVE_ENDED)


@dataclass
class PublishStats:
    published: int = 0
    failed: int = 0
    abandoned: int = 0
    # Rows whose outcome could not be written at once (the database away): written later,
    # never published again by this replica.
    record_retries: int = 0


@dataclass(frozen=True)
class Claimed:
    """One claimed row with all its command needs, read when it was claimed."""

    publication: Publication
    broadcast: Broadcast
    city_code: str
    audio: tuple[contract.AudioRef, ...]
    live: contract.LiveStream | None
    problem: str | None = None  # why its command cannot be built (it is retried later)
    # A copy for one speaker that another publish reaching it since the copy was owed (or an
    # earlier copy in the same batch) already covers: a birth repeated, a catch-up and a retry
    # for the same command. It is not sent.
    superseded: bool = False


@dataclass(frozen=True)
class _Outcome:
    result: str  # PUBLISHED, ABANDONED or an error text
    at: datetime  # when it was handed to the broker (or given up)


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
        metrics: Metrics | None = None,
        seal: KeySeal | None = None,
        audio_links: AudioLinks | None = None,
    ) -> None:
        self._sessions = sessions
        self._seal = seal or KeySeal.from_settings(settings)
        self._links = audio_links or AudioLinks.from_settings(settings)
        self._metrics = metrics or Metrics()
        self._bus = bus
        self._settings = settings
        self._clock = clock
        self._owner = owner
        self._batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        # By broadcast and its audio: a live broadcast's audio changes from the start chime to
        # the recording when the talk ends (its play commands are given up from then on).
        self._audio: OrderedDict[tuple[str, str], tuple[contract.AudioRef, ...]] = OrderedDict()
        self._postgres = not settings.is_sqlite
        self._signer: Signer | None = None
        # Handed to the broker, not yet written: publication id -> what happened.
        self._outstanding: dict[int, tuple[Claimed, _Outcome]] = {}
        self._set_aside: set[int] = set()
        self.wake = asyncio.Event()
        self.stats = PublishStats()

    async def run(self) -> None:
        failing = False
        while True:
            # Cleared before the pass, not after: a commit that lands while this pass runs
            # (after its claim) leaves the wake set, and the next pass starts at once.
            self.wake.clear()
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
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a
                # cancellation that arrives as the wake is set, and this loop would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.poll_interval_s):
                        await self.wake.wait()

    async def publish_due(self) -> int:
        # What an earlier pass published is written before anything is claimed: until it is,
        # nothing new goes out, and those rows are never handed to the broker again from here.
        await self._record_outstanding()
        if not self._bus.connected:
            return 0
        now = self._clock.now()
        claimed = await self._claim(now)
        if not claimed:
            return 0
        lease_until = self._lease_until(now)
        tasks = {asyncio.create_task(self._publish(item)): item for item in claimed}
        try:
            while tasks:
                done, _ = await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    item = tasks.pop(task)
                    self._outstanding[item.publication.id] = (item, task.result())
                # Written while the other publishes are in flight: one transaction for whatever
                # has come back meanwhile.
                await self._record_outstanding(lease_until=lease_until)
        finally:
            if tasks:
                # Writing failed: the publishes in flight still finish, and their outcomes wait
                # with the others for the next pass.
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
                for (_, item), outcome in zip(tasks.items(), outcomes, strict=True):
                    if isinstance(outcome, _Outcome):
                        self._outstanding[item.publication.id] = (item, outcome)
        return len(claimed)

    def _lease_until(self, claimed_at: datetime) -> datetime:
        return claimed_at + timedelta(seconds=self._settings.publish_lease_s)

    async def _record_outstanding(self, *, lease_until: datetime | None = None) -> None:
        """Write the outcomes held, retrying a database outage while the lease holds (then the
        pass ends, and the next one starts by writing them)."""
        delay = 0.2
        while self._outstanding:
            written = dict(self._outstanding)
            try:
                await self._record(list(written.values()))
            except (DBAPIError, OSError) as exc:
                self.stats.record_retries += 1
                if lease_until is None or self._clock.now() + timedelta(seconds=delay) >= (
                    lease_until
                ):
                    log.warning("%d publications not recorded yet (%s)", len(written), exc)
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception:
                log.exception("publications not recorded together; recording them one by one")
                await self._record_one_by_one(written)
            for key in written:
                self._outstanding.pop(key, None)

    async def _record_one_by_one(self, written: dict[int, tuple[Claimed, _Outcome]]) -> None:
        """A row whose record fails on its own (not an outage) is set aside: this replica never
        claims it again, and the rest of the batch is recorded."""
        for key, entry in written.items():
            try:
                await self._record([entry])
            except (DBAPIError, OSError):
                raise
            except Exception:
                log.exception("publication %d cannot be recorded; set aside", key)
                self._set_aside.add(key)

    async def _claim(self, now: datetime) -> list[Claimed]:
        free = or_(Publication.lease_expires_at.is_(None), Publication.lease_expires_at < now)
        async with self._sessions() as session:
            query = (
                select(Publication.id)
                .where(Publication.state == "pending", Publication.available_at <= now, free)
                .order_by(Publication.id)
                .limit(self._batch)
            )
            if self._set_aside:
                query = query.where(Publication.id.not_in(sorted(self._set_aside)))
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            ids = list(await session.scalars(query))
            if not ids:
                return []
            # Read per batch, not cached forever, so a rotation on any replica takes effect here.
            self._signer = await active_signer(session, now, self._seal)
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
                    .order_by(Publication.id)
                )
            ).tuples()
            found = list(rows)
            # A live broadcast's start command names its stream; None once the session ended,
            # and then the command is not sent at all (`_publish`).
            streams = {
                bid: await live.stream_of(session, bid) for bid in {b.id for _, b, _ in found}
            }
            covered = await _covered(session, [p for p, _, _ in found])
            audio: dict[tuple[str, str], tuple[contract.AudioRef, ...] | str] = {}
            for publication, broadcast, _ in found:
                key = _audio_key(broadcast, publication.audio_set)
                if key not in audio:
                    audio[key] = await self._refs_of(session, broadcast, publication.audio_set)
            await session.commit()
        claimed = []
        for publication, broadcast, city_code in found:
            refs = audio[_audio_key(broadcast, publication.audio_set)]
            claimed.append(
                Claimed(
                    publication=publication,
                    broadcast=broadcast,
                    city_code=city_code,
                    audio=() if isinstance(refs, str) else refs,
                    live=streams.get(broadcast.id),
                    problem=refs if isinstance(refs, str) else None,
                    superseded=publication.id in covered,
                )
            )
        return claimed

    async def _refs_of(
        self, session: AsyncSession, broadcast: Broadcast, audio_set: str | None
    ) -> tuple[contract.AudioRef, ...] | str:
        """The audio references of a broadcast for a language set (None: its first audio), or
        why they cannot be read."""
        key = _audio_key(broadcast, audio_set)
        refs = self._audio.get(key)
        if refs is not None:
            self._audio.move_to_end(key)
            return refs
        try:
            refs = await self._audio_refs(session, broadcast, audio_set)
        except LookupError as exc:
            return f"audio: {exc}"[:300]
        self._audio[key] = refs
        while len(self._audio) > AUDIO_CACHE_MAX:
            self._audio.popitem(last=False)
        return refs

    async def _audio_refs(
        self, session: AsyncSession, broadcast: Broadcast, audio_set: str | None
    ) -> tuple[contract.AudioRef, ...]:
        encodings = language_audio.encodings_of(broadcast.audio_sha256, audio_set)
        if not encodings:
            raise LookupError(f"broadcast {broadcast.id} has no audio for {audio_set}")
        refs = []
        for codec in _CODEC_ORDER:
            sha = encodings.get(codec)
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
                        # Good for as long as the command is: signed, so only speakers fetch it.
                        url=self._links.url(
                            self._settings.public_url, asset.sha256, broadcast.expires_at
                        ),
                    )
                )
        return tuple(refs)

    def command_for(self, item: Claimed, at: datetime) -> tuple[str, contract.Command]:
        publication, broadcast, city_code = item.publication, item.broadcast, item.city_code
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
        lead_ms = self._settings.play_lead_ms
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
            expires_at_ms=to_ms(command_expiry(publication, broadcast)),
            nonce=contract.new_nonce(),
            title=broadcast.title,
            text=broadcast.text,
            audio=() if cancel else item.audio,
            live=None if cancel else item.live,
            play_at_ms=None if cancel or not lead_ms else to_ms(at) + lead_ms,
            supersedes=None if cancel else superseded_command_ids(broadcast.target),
        )
        if self._signer is not None:
            command = self._signer.sign(command)
        return topic, command

    async def _publish(self, item: Claimed) -> _Outcome:
        """Publish one row. Never raises: whatever goes wrong with one row is its outcome, and
        the others of the batch go out and are recorded all the same."""
        publication, broadcast = item.publication, item.broadcast
        now = self._clock.now()
        stale = broadcast.cancelled_at is not None and publication.kind == "play"
        if stale or command_expiry(publication, broadcast) <= now:
            return _Outcome(ABANDONED, now)
        if item.superseded:
            return _Outcome(SUPERSEDED, now)
        if publication.kind == "play" and item.live is None and _is_live(broadcast):
            return _Outcome(LIVE_ENDED, now)
        if item.problem is not None and publication.kind == "play":
            return _Outcome(item.problem, now)
        try:
            topic, command = self.command_for(item, now)
            payload = contract.encode_command(command)
            expiry_s = contract.message_expiry_seconds(command, to_ms(now))
        except Exception as exc:
            log.exception("cannot build the command of publication %d", publication.id)
            return _Outcome(f"command: {exc!r}"[:300], now)
        async with self._limit:
            try:
                await self._bus.publish(topic, payload, qos=contract.COMMAND_QOS, expiry_s=expiry_s)
            except BusUnavailable as exc:
                return _Outcome(f"broker: {exc}"[:300], now)
        return _Outcome(PUBLISHED, now)

    async def _record(self, written: list[tuple[Claimed, _Outcome]]) -> None:
        ack_timeout = timedelta(seconds=self._settings.ack_timeout_s)
        first_sends: set[str] = set()  # broadcasts of which a first publication went out
        async with self._sessions() as session:
            rows = {
                row.id: row
                for row in await session.scalars(
                    select(Publication).where(
                        Publication.id.in_([item.publication.id for item, _ in written])
                    )
                )
            }
            for item, outcome in written:
                row = rows.get(item.publication.id)
                # Another replica took it over after our lease lapsed: its record, not ours.
                if row is None or row.lease_owner != self._owner:
                    continue
                row.lease_owner = None
                row.lease_expires_at = None
                row.attempts += 1
                if outcome.result == PUBLISHED:
                    row.state = "published"
                    row.published_at = outcome.at
                    if row.created_at == item.broadcast.created_at:
                        first_sends.add(row.broadcast_id)
                    if row.kind == "play":
                        await deliveries.mark_published(
                            session, row, now=outcome.at, ack_timeout=ack_timeout
                        )
                elif outcome.result in _GIVEN_UP:
                    row.state = "abandoned"
                    row.last_error = None if outcome.result == ABANDONED else outcome.result
                else:
                    row.last_error = outcome.result
                    backoff = min(30.0, 0.5 * 2 ** min(row.attempts, 6))
                    row.available_at = self._clock.now() + timedelta(seconds=backoff)
            published = await _first_sends_done(session, first_sends)
            await session.commit()
        for broadcast_id in sorted(published):
            with about_broadcast(broadcast_id):
                log.info(
                    "broadcast %s published: its first commands reached the broker", broadcast_id
                )
        for item, outcome in written:
            if outcome.result == PUBLISHED:
                self.stats.published += 1
                self._metrics.observe_publish_lag(item.publication.available_at, outcome.at)
            elif outcome.result in _GIVEN_UP:
                self.stats.abandoned += 1
            else:
                self.stats.failed += 1


async def _first_sends_done(session: AsyncSession, broadcast_ids: set[str]) -> set[str]:
    """Those of the broadcasts with no publication written with them still pending (retries and
    catch-ups, written later, do not count): their publishing is done."""
    if not broadcast_ids:
        return set()
    pending = await session.scalars(
        select(Publication.broadcast_id)
        .join(Broadcast, Broadcast.id == Publication.broadcast_id)
        .where(
            Publication.broadcast_id.in_(broadcast_ids),
            Publication.state == "pending",
            Publication.created_at == Broadcast.created_at,
        )
        .distinct()
    )
    return broadcast_ids - set(pending)


async def _covered(session: AsyncSession, claimed: list[Publication]) -> set[int]:
    """The claimed copies for one speaker that need not go out: since each was owed, a publish
    reaching that speaker went out (to the city, or to it alone), or an earlier copy of the
    same command for it is in this batch. A publish after the copy was owed is one the speaker
    (connected then, as its birth or its silence said) was there to get."""
    mine = [p for p in claimed if p.kind == "play" and p.scope_kind == "speaker"]
    if not mine:
        return set()
    since = min(p.created_at for p in mine)
    sent = (
        await session.execute(
            select(Publication.broadcast_id, Publication.scope_kind, Publication.scope_keys)
            .add_columns(Publication.published_at)
            .where(
                Publication.broadcast_id.in_({p.broadcast_id for p in mine}),
                Publication.kind == "play",
                Publication.state == "published",
                Publication.scope_kind.in_(("all", "speaker")),
                Publication.published_at >= since,
            )
        )
    ).tuples()
    reached: dict[tuple[str, int | None], datetime] = {}
    for broadcast_id, scope_kind, keys, published_at in sent:
        assert published_at is not None
        for key in [None] if scope_kind == "all" else keys:
            last = reached.get((broadcast_id, key))
            if last is None or published_at > last:
                reached[(broadcast_id, key)] = published_at
    covered: set[int] = set()
    batch: set[tuple[str, int]] = set()
    for p in sorted(mine, key=lambda p: p.id):
        pair = (p.broadcast_id, p.scope_keys[0])
        latest = max(
            (t for t in (reached.get(pair), reached.get((p.broadcast_id, None))) if t),
            default=None,
        )
        if pair in batch or (latest is not None and latest >= p.created_at):
            covered.add(p.id)
        batch.add(pair)
    return covered


def _is_live(broadcast: Broadcast) -> bool:
    """A live session's broadcast: its play command is only ever sent with the stream."""
    return broadcast.target.get("live") is True


def _audio_key(broadcast: Broadcast, audio_set: str | None) -> tuple[str, str]:
    # The expiry too: the links in the references are signed for it.
    shas = ",".join(sorted(language_audio.encodings_of(broadcast.audio_sha256, audio_set).values()))
    return broadcast.id, f"{shas}@{broadcast.expires_at.isoformat()}"


def command_expiry(publication: Publication, broadcast: Broadcast) -> datetime:
    """When the command of this row stops being valid: the broadcast's expiry for a play, and
    for a cancel at least the whole audio plus grace after the cancel was asked."""
    if publication.kind != "cancel":
        return broadcast.expires_at
    playing_until = (
        publication.created_at + timedelta(milliseconds=broadcast.duration_ms) + CANCEL_GRACE
    )
    return max(broadcast.expires_at, playing_until)
