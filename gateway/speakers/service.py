"""Speakers: who hears a broadcast, their counts, and the speakers admins manage one at a time.

Presence from the wire lives in ``gateway.speakers.presence``, importing speakers from a CSV in
``gateway.speakers.bulk``, speakers' receipt keys in ``gateway.speakers.receipt_keys``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, TypeVar, cast

from sqlalchemy import Table, bindparam, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.devicesec.models import SpeakerCredential
from gateway.errors import Conflict, NotFound
from gateway.places import service as places
from gateway.places.models import City
from gateway.speakers.models import Speaker
from gateway.speakers.schemas import (
    FleetPage,
    FleetSpeaker,
    Kind,
    SpeakerCreate,
    SpeakerPage,
    SpeakerRead,
    SpeakerUpdate,
)

# SQLite allows 999 bound parameters per statement in older builds; stay under it.
IN_CHUNK: Final = 900
_T = TypeVar("_T")


def in_chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


# --------------------------------------------------------------------------------------------
# Recipients


@dataclass(frozen=True)
class TargetSpeaker:
    id: int
    code: str
    village_id: int
    district_id: int
    codecs: tuple[str, ...]
    online: bool


async def speakers_for(
    session: AsyncSession, city_id: int, *, village_ids: Sequence[int] | None
) -> list[TargetSpeaker]:
    """The speakers of the given villages (None: of the whole city), ordered by id."""
    base = select(
        Speaker.id,
        Speaker.code,
        Speaker.village_id,
        Speaker.district_id,
        Speaker.codecs,
        Speaker.online,
    ).where(Speaker.city_id == city_id)
    if village_ids is None:
        statements = [base]
    else:
        statements = [
            base.where(Speaker.village_id.in_(chunk))
            for chunk in in_chunks(sorted(set(village_ids)))
        ]
    found: list[TargetSpeaker] = []
    for statement in statements:
        rows = await session.execute(statement)
        found += [
            TargetSpeaker(sid, code, vid, did, tuple(codecs or ()), bool(online))
            for sid, code, vid, did, codecs, online in rows
        ]
    found.sort(key=lambda s: s.id)
    return found


async def speaker_ids_by_code(
    session: AsyncSession, city_id: int, codes: Collection[str]
) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in in_chunks(sorted(set(codes))):
        rows = await session.execute(
            select(Speaker.code, Speaker.id).where(
                Speaker.city_id == city_id, Speaker.code.in_(chunk)
            )
        )
        found.update(rows.tuples().all())
    return found


def speakers_table() -> Table:
    return cast(Table, Speaker.__table__)


# --------------------------------------------------------------------------------------------
# Counts, for the places pages


@dataclass(frozen=True)
class SpeakerTally:
    total: int
    online: int


async def tally(
    session: AsyncSession,
    city_id: int,
    *,
    by: Literal["village", "district"],
    ids: Sequence[int] | None = None,
) -> dict[int, SpeakerTally]:
    """Speakers and online speakers per village or district (None: every one of the city)."""
    column = Speaker.village_id if by == "village" else Speaker.district_id
    base = (
        select(column, func.count(), func.sum(case((Speaker.online.is_(True), 1), else_=0)))
        .where(Speaker.city_id == city_id)
        .group_by(column)
    )
    if ids is None:
        statements = [base]
    else:
        statements = [base.where(column.in_(chunk)) for chunk in in_chunks(sorted(set(ids)))]
    found: dict[int, SpeakerTally] = {}
    for statement in statements:
        for key, total, online in await session.execute(statement):
            found[key] = SpeakerTally(int(total), int(online or 0))
    return found


async def tally_city(session: AsyncSession, city_id: int) -> SpeakerTally:
    row = (
        await session.execute(
            select(func.count(), func.sum(case((Speaker.online.is_(True), 1), else_=0))).where(
                Speaker.city_id == city_id
            )
        )
    ).one()
    return SpeakerTally(int(row[0]), int(row[1] or 0))


async def follow_village_moves(session: AsyncSession, moves: Mapping[int, int]) -> None:
    """Villages moved to other districts (village id -> district id) take their speakers along."""
    if not moves:
        return
    table = speakers_table()
    await session.execute(
        update(table)
        .where(table.c.village_id == bindparam("b_village"))
        .values(district_id=bindparam("b_district")),
        [{"b_village": vid, "b_district": did} for vid, did in moves.items()],
    )


# --------------------------------------------------------------------------------------------
# Admin: one speaker at a time


def _speaker_missing(speaker_id: int) -> NotFound:
    return NotFound(
        "speaker_not_found",
        ko=f"스피커 {speaker_id}을(를) 찾을 수 없습니다.",
        en=f"Speaker {speaker_id} does not exist.",
    )


def _duplicate(code: str) -> Conflict:
    return Conflict(
        "duplicate_code",
        ko=f"코드 '{code}'인 스피커가 이미 있습니다.",
        en=f"A speaker with code '{code}' already exists.",
    )


async def _refuse_taken_code(session: AsyncSession, city_id: int, code: str) -> None:
    taken = await session.scalar(
        select(Speaker.id).where(Speaker.city_id == city_id, Speaker.code == code)
    )
    if taken is not None:
        raise _duplicate(code)


async def _flush_unique(session: AsyncSession, code: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        # Two requests raced for the same code; the loser's transaction is rolled back.
        raise _duplicate(code) from exc


async def load_speaker(session: AsyncSession, city_id: int, speaker_id: int) -> Speaker:
    speaker = await session.get(Speaker, speaker_id)
    if speaker is None or speaker.city_id != city_id:
        raise _speaker_missing(speaker_id)
    return speaker


async def list_speakers(
    session: AsyncSession,
    city: City,
    *,
    village_id: int | None,
    district_id: int | None,
    online: bool | None,
    kind: Kind | None,
    limit: int,
    offset: int,
) -> SpeakerPage:
    conditions = [Speaker.city_id == city.id]
    if village_id is not None:
        await places.load_village(session, city.id, village_id)
        conditions.append(Speaker.village_id == village_id)
    if district_id is not None:
        await places.load_district(session, city.id, district_id)
        conditions.append(Speaker.district_id == district_id)
    if online is not None:
        conditions.append(Speaker.online.is_(online))
    if kind is not None:
        conditions.append(Speaker.kind == kind)
    total = await session.scalar(select(func.count()).select_from(Speaker).where(*conditions))
    speakers = await session.scalars(
        select(Speaker)
        .where(*conditions)
        .order_by(Speaker.code, Speaker.id)
        .limit(limit)
        .offset(offset)
    )
    return SpeakerPage(
        items=[SpeakerRead.model_validate(s) for s in speakers],
        total=total or 0,
        limit=limit,
        offset=offset,
    )


async def get_speaker(session: AsyncSession, city: City, speaker_id: int) -> SpeakerRead:
    return SpeakerRead.model_validate(await load_speaker(session, city.id, speaker_id))


async def create_speaker(
    session: AsyncSession, city: City, body: SpeakerCreate, *, now: datetime
) -> SpeakerRead:
    village = await places.load_village(session, city.id, body.village_id)
    await _refuse_taken_code(session, city.id, body.code)
    speaker = Speaker(
        city_id=city.id,
        district_id=village.district_id,
        village_id=village.id,
        code=body.code,
        kind=body.kind,
        codecs=list(body.codecs),
        firmware=body.firmware,
        online=False,
        last_seen_at=None,
        created_at=now,
    )
    session.add(speaker)
    await _flush_unique(session, body.code)
    return SpeakerRead.model_validate(speaker)


async def update_speaker(
    session: AsyncSession, city: City, speaker_id: int, body: SpeakerUpdate
) -> SpeakerRead:
    speaker = await load_speaker(session, city.id, speaker_id)
    if body.code is not None and body.code != speaker.code:
        await _refuse_taken_code(session, city.id, body.code)
        speaker.code = body.code
        # The broker password was issued for the old code, its user name: it goes with it.
        await session.execute(
            delete(SpeakerCredential).where(SpeakerCredential.speaker_id == speaker.id)
        )
    if body.village_id is not None and body.village_id != speaker.village_id:
        village = await places.load_village(session, city.id, body.village_id)
        speaker.village_id = village.id
        speaker.district_id = village.district_id
    if body.kind is not None:
        speaker.kind = body.kind
    if body.codecs is not None:
        speaker.codecs = list(body.codecs)
    if "firmware" in body.model_fields_set:
        speaker.firmware = body.firmware
    await _flush_unique(session, speaker.code)
    return SpeakerRead.model_validate(speaker)


async def delete_speaker(session: AsyncSession, city: City, speaker_id: int) -> None:
    speaker = await load_speaker(session, city.id, speaker_id)
    await session.delete(speaker)
    await session.flush()


# --------------------------------------------------------------------------------------------
# Admin: the fleet, and where a speaker is placed


async def fleet(session: AsyncSession, city: City, *, limit: int | None, offset: int) -> FleetPage:
    """Every speaker's wire identity (ordered by id), for a simulated fleet."""
    total = await session.scalar(
        select(func.count()).select_from(Speaker).where(Speaker.city_id == city.id)
    )
    rows = (
        await session.execute(
            select(
                Speaker.code, Speaker.village_id, Speaker.district_id, Speaker.codecs, Speaker.kind
            )
            .where(Speaker.city_id == city.id)
            .order_by(Speaker.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    villages = await places.village_codes(session, [r.village_id for r in rows])
    districts = await places.district_codes(session, [r.district_id for r in rows])
    items = [
        FleetSpeaker(
            code=code,
            village_code=villages[vid][0],
            district_code=districts[did],
            codecs=codecs,
            kind=kind,
        )
        for code, vid, did, codecs, kind in rows
    ]
    return FleetPage(city_code=city.code, items=items, total=total or 0, limit=limit, offset=offset)


@dataclass(frozen=True)
class Placement:
    """Where one speaker sits, by id and by wire code."""

    speaker_id: int
    code: str
    district_id: int
    district_code: str
    village_code: str
    kind: str = "loudspeaker"


async def placement_of(session: AsyncSession, city: City, code: str) -> Placement:
    """The speaker whose wire id is `code`, or NotFound."""
    row = (
        await session.execute(
            select(Speaker.id, Speaker.village_id, Speaker.district_id, Speaker.kind).where(
                Speaker.city_id == city.id, Speaker.code == code
            )
        )
    ).first()
    if row is None:
        raise NotFound(
            "speaker_not_found",
            ko="스피커를 찾을 수 없습니다.",
            en=f"No speaker {code!r} in this city.",
        )
    speaker_id, village_id, district_id, kind = row
    villages = await places.village_codes(session, [village_id])
    districts = await places.district_codes(session, [district_id])
    return Placement(
        speaker_id, code, district_id, districts[district_id], villages[village_id][0], kind
    )
