"""Speakers: who hears a broadcast, presence from the wire, and the speakers admins manage."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, TypeVar, cast, get_args

from sqlalchemy import Table, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import UTCDateTime
from gateway.deliveries import ed25519
from gateway.devicesec.models import SpeakerCredential
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.places import csv_import
from gateway.places import service as places
from gateway.places.csv_import import CsvRejected, CsvRow, RowProblem
from gateway.places.models import City
from gateway.speakers.models import Speaker
from gateway.speakers.schemas import (
    CODEC_ORDER,
    Codec,
    FleetPage,
    FleetSpeaker,
    Kind,
    ReceiptKeyEnroll,
    ReceiptKeyRead,
    ReceiptKeysEnrolled,
    SpeakerCreate,
    SpeakerPage,
    SpeakerRead,
    SpeakersImportReport,
    SpeakerUpdate,
)
from wire import contract

log = logging.getLogger(__name__)

# SQLite allows 999 bound parameters per statement in older builds; stay under it.
IN_CHUNK: Final = 900
SPEAKER_COLUMNS: Final = ("speaker_code", "village_code", "kind", "codecs")
DEFAULT_CODECS: Final[tuple[Codec, ...]] = ("opus", "mp3")
_KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
_CODEC_SPLIT: Final = re.compile(r"[;|,\s]+")

_T = TypeVar("_T")


def _chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
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
            base.where(Speaker.village_id.in_(chunk)) for chunk in _chunks(sorted(set(village_ids)))
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
    for chunk in _chunks(sorted(set(codes))):
        rows = await session.execute(
            select(Speaker.code, Speaker.id).where(
                Speaker.city_id == city_id, Speaker.code.in_(chunk)
            )
        )
        found.update(rows.tuples().all())
    return found


# --------------------------------------------------------------------------------------------
# Presence


@dataclass(frozen=True)
class PresenceUpdate:
    code: str
    status: Literal["online", "heartbeat", "offline"]
    at: datetime
    codecs: tuple[str, ...] | None
    firmware: str | None


def _speakers_table() -> Table:
    return cast(Table, Speaker.__table__)


async def apply_presence(
    session: AsyncSession, city_id: int, updates: Sequence[PresenceUpdate]
) -> list[int]:
    """Apply a batch of presence messages with a few statements, whatever the batch size.

    Within the batch the last message of a speaker decides whether it is online: a will
    (``offline``) carries the time its connection began, so times cannot order it. Returns the
    ids of speakers that came online (were offline before), so they can be sent what they missed.
    """
    final: dict[str, str] = {}
    seen_at: dict[str, datetime] = {}
    declared: dict[str, dict[str, object]] = {}
    for message in updates:
        final[message.code] = message.status
        if message.status == "offline":
            continue
        if message.code not in seen_at or message.at > seen_at[message.code]:
            seen_at[message.code] = message.at
        if message.status == "online":
            facts = declared.setdefault(message.code, {})
            codecs = [c for c in CODEC_ORDER if c in (message.codecs or ())]
            if codecs:
                facts["codecs"] = codecs
            if message.firmware is not None:
                facts["firmware"] = message.firmware[:64]
    if not final:
        return []
    ids = await speaker_ids_by_code(session, city_id, final.keys())
    unknown = len(final) - len(ids)
    if unknown:
        log.info("presence from %d unknown speakers ignored", unknown)

    going_offline = sorted(
        ids[c] for c, status in final.items() if status == "offline" and c in ids
    )
    going_online = sorted(ids[c] for c, status in final.items() if status != "offline" and c in ids)
    for chunk in _chunks(going_offline):
        await session.execute(
            update(Speaker)
            .where(Speaker.id.in_(chunk), Speaker.online.is_(True))
            .values(online=False)
            .execution_options(synchronize_session=False)
        )
    came_online: list[int] = []
    for chunk in _chunks(going_online):
        # Flipping only rows that were offline makes "came online" exact even when two gateway
        # replicas see the same speaker: the second finds it online already.
        came_online += await session.scalars(
            update(Speaker)
            .where(Speaker.id.in_(chunk), Speaker.online.is_(False))
            .values(online=True)
            .returning(Speaker.id)
            .execution_options(synchronize_session=False)
        )

    table = _speakers_table()
    at = bindparam("b_at", type_=UTCDateTime())
    # One executemany per shape of change; last_seen_at never moves backwards.
    shapes: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for code, moment in seen_at.items():
        if code not in ids:
            continue
        facts = declared.get(code, {})
        shape = tuple(sorted(facts))
        shapes.setdefault(shape, []).append(
            {"b_id": ids[code], "b_at": moment, **{f"b_{k}": v for k, v in facts.items()}}
        )
    for shape, params in shapes.items():
        values: dict[str, object] = {
            "last_seen_at": case(
                (or_(table.c.last_seen_at.is_(None), table.c.last_seen_at < at), at),
                else_=table.c.last_seen_at,
            )
        }
        for name in shape:
            values[name] = bindparam(f"b_{name}", type_=table.c[name].type)
        await session.execute(
            update(table).where(table.c.id == bindparam("b_id")).values(values), params
        )
    return sorted(came_online)


async def mark_silent_offline(
    session: AsyncSession, city_id: int, *, older_than: datetime
) -> list[int]:
    """Speakers online but not heard from since ``older_than`` go offline; returns their ids."""
    silent = await session.scalars(
        update(Speaker)
        .where(
            Speaker.city_id == city_id,
            Speaker.online.is_(True),
            or_(Speaker.last_seen_at.is_(None), Speaker.last_seen_at < older_than),
        )
        .values(online=False)
        .returning(Speaker.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(silent)


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
        statements = [base.where(column.in_(chunk)) for chunk in _chunks(sorted(set(ids)))]
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
    table = _speakers_table()
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


async def _load(session: AsyncSession, city_id: int, speaker_id: int) -> Speaker:
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
    return SpeakerRead.model_validate(await _load(session, city.id, speaker_id))


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
    speaker = await _load(session, city.id, speaker_id)
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
    speaker = await _load(session, city.id, speaker_id)
    await session.delete(speaker)
    await session.flush()


# --------------------------------------------------------------------------------------------
# Admin: in bulk


@dataclass(frozen=True)
class SpeakerRow:
    line: int
    code: str
    village_code: str
    kind: Kind
    codecs: tuple[Codec, ...]


def _kind(row: CsvRow, problems: list[RowProblem]) -> Kind:
    value = row.values["kind"].lower() or "loudspeaker"
    for kind in _KINDS:
        if value == kind:
            return kind
    problems.append(
        RowProblem(
            row.line,
            f"kind '{value[:40]}'은(는) {' 또는 '.join(_KINDS)}이어야 합니다.",
            f"kind '{value[:40]}' must be {' or '.join(_KINDS)}.",
        )
    )
    return "loudspeaker"


def _codecs(row: CsvRow, problems: list[RowProblem]) -> tuple[Codec, ...]:
    given = [c for c in _CODEC_SPLIT.split(row.values["codecs"].lower()) if c]
    if not given:
        return DEFAULT_CODECS
    unknown = [c for c in given if c not in CODEC_ORDER]
    if unknown:
        names = ", ".join(u[:20] for u in unknown)
        problems.append(
            RowProblem(
                row.line,
                f"알 수 없는 코덱입니다: {names} (opus, mp3 중에서 ';'로 구분).",
                f"unknown codecs: {names} (use opus and/or mp3, separated by ';').",
            )
        )
    return tuple(c for c in CODEC_ORDER if c in given)


def parse_speakers_csv(data: bytes) -> list[SpeakerRow]:
    """Rows of ``speaker_code,village_code,kind,codecs`` (kind defaults to loudspeaker, codecs
    to ``opus;mp3``); every problem in the file is collected before anything is refused."""
    problems: list[RowProblem] = []
    rows: list[SpeakerRow] = []
    lines: dict[str, int] = {}
    for row in csv_import.read_rows(data, SPEAKER_COLUMNS):
        before = len(problems)
        parsed = SpeakerRow(
            line=row.line,
            code=csv_import.check_code(row, "speaker_code", problems),
            village_code=csv_import.check_code(row, "village_code", problems),
            kind=_kind(row, problems),
            codecs=_codecs(row, problems),
        )
        if len(problems) > before:
            continue
        first = lines.setdefault(parsed.code, parsed.line)
        if first != parsed.line:
            problems.append(
                RowProblem(
                    parsed.line,
                    f"스피커 코드 {parsed.code}이(가) {first}행에도 있습니다.",
                    f"speaker code {parsed.code} also appears on line {first}.",
                )
            )
            continue
        rows.append(parsed)
    if problems:
        raise CsvRejected(problems)
    return rows


async def import_speakers(
    session: AsyncSession, city: City, data: bytes, *, now: datetime
) -> SpeakersImportReport:
    return await upsert_speakers(session, city.id, parse_speakers_csv(data), now=now)


async def upsert_speakers(
    session: AsyncSession, city_id: int, rows: Sequence[SpeakerRow], *, now: datetime
) -> SpeakersImportReport:
    """Create or update speakers by code; refuses every row if any names an unknown village."""
    villages = await places.villages_by_code(session, city_id, {r.village_code for r in rows})
    unknown = [
        RowProblem(
            r.line,
            f"마을 코드 {r.village_code}이(가) 없습니다.",
            f"there is no village with code {r.village_code}.",
        )
        for r in rows
        if r.village_code not in villages
    ]
    if unknown:
        raise CsvRejected(unknown)
    existing = {
        s.code: s
        for chunk in _chunks(sorted({r.code for r in rows}))
        for s in await session.scalars(
            select(Speaker).where(Speaker.city_id == city_id, Speaker.code.in_(chunk))
        )
    }
    fresh: list[dict[str, object]] = []
    updated = 0
    for row in rows:
        village_id, district_id = villages[row.village_code]
        speaker = existing.get(row.code)
        if speaker is None:
            fresh.append(
                {
                    "city_id": city_id,
                    "district_id": district_id,
                    "village_id": village_id,
                    "code": row.code,
                    "kind": row.kind,
                    "codecs": list(row.codecs),
                    "online": False,
                    "created_at": now,
                }
            )
            continue
        wanted = (village_id, district_id, row.kind, list(row.codecs))
        if (speaker.village_id, speaker.district_id, speaker.kind, speaker.codecs) == wanted:
            continue
        updated += 1
        speaker.village_id, speaker.district_id = village_id, district_id
        speaker.kind, speaker.codecs = row.kind, list(row.codecs)
    if fresh:
        await session.execute(insert(Speaker), fresh)
    await session.flush()
    return SpeakersImportReport(rows=len(rows), created=len(fresh), updated=updated)


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


async def placement_of(session: AsyncSession, city: City, code: str) -> Placement:
    """The speaker whose wire id is `code`, or NotFound."""
    row = (
        await session.execute(
            select(Speaker.id, Speaker.village_id, Speaker.district_id).where(
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
    speaker_id, village_id, district_id = row
    villages = await places.village_codes(session, [village_id])
    districts = await places.district_codes(session, [district_id])
    return Placement(speaker_id, code, district_id, districts[district_id], villages[village_id][0])


# --------------------------------------------------------------------------------------------
# Receipt keys: each speaker's own Ed25519 key, of which the gateway keeps the public half


def _bad_receipt_key(code: str) -> InvalidRequest:
    return InvalidRequest(
        "invalid_receipt_key",
        ko=f"스피커 {code}의 수신 확인 키가 올바른 Ed25519 공개 키가 아닙니다.",
        en=f"The receipt key of speaker {code} is not a valid Ed25519 public key "
        "(a canonical point of the prime-order subgroup).",
    )


def _proven_key(city: City, code: str, public_key: str, proof: str) -> str:
    """A strong key whose holder signed its enrollment for this speaker of this city."""
    key = _checked_key(code, public_key)
    if not contract.verify_receipt_key_proof(city.code, code, key, proof):
        raise InvalidRequest(
            "invalid_receipt_key_proof",
            ko=f"스피커 {code}의 수신 확인 키 소유 증명 서명이 맞지 않습니다.",
            en=f"The proof of possession of speaker {code}'s receipt key does not verify.",
        )
    return key


def _checked_key(code: str, public_key: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(public_key, validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise _bad_receipt_key(code) from None
    # A small-order or mixed-order point (all zeros among them) would let anyone forge the
    # speaker's receipts: only a point of the prime-order subgroup is a receipt key.
    if not ed25519.is_strong_public_key(raw):
        raise _bad_receipt_key(code)
    return public_key


async def enroll_receipt_key(
    session: AsyncSession,
    city: City,
    speaker_id: int,
    enrollment: ReceiptKeyEnroll,
    *,
    now: datetime,
) -> ReceiptKeyRead:
    """Set a speaker's receipt key; receipts it signs from now on verify against this one."""
    speaker = await _load(session, city.id, speaker_id)
    public_key = enrollment.public_key
    speaker.receipt_public_key = _proven_key(city, speaker.code, public_key, enrollment.proof)
    speaker.receipt_key_enrolled_at = now
    await session.flush()
    return ReceiptKeyRead(
        speaker_id=speaker.id, code=speaker.code, public_key=public_key, enrolled_at=now
    )


async def enroll_receipt_keys(
    session: AsyncSession, city: City, keys: Mapping[str, ReceiptKeyEnroll], *, now: datetime
) -> ReceiptKeysEnrolled:
    """Set the receipt keys of many speakers by code: all or none."""
    checked = {code: _proven_key(city, code, e.public_key, e.proof) for code, e in keys.items()}
    ids = await speaker_ids_by_code(session, city.id, checked)
    unknown = sorted(set(checked) - set(ids))
    if unknown:
        raise NotFound(
            "speaker_not_found",
            ko=f"없는 스피커 코드: {', '.join(unknown[:10])}",
            en=f"Unknown speaker codes: {', '.join(unknown[:10])}",
        )
    for code, key in checked.items():
        await session.execute(
            update(Speaker)
            .where(Speaker.id == ids[code])
            .values(receipt_public_key=key, receipt_key_enrolled_at=now)
            .execution_options(synchronize_session=False)
        )
    await session.flush()
    return ReceiptKeysEnrolled(enrolled=len(checked))


async def receipt_keys(
    session: AsyncSession, speaker_ids: Collection[int]
) -> dict[int, tuple[str, bytes | None]]:
    """Speaker id -> (code, raw receipt public key or None when none is enrolled)."""
    found: dict[int, tuple[str, bytes | None]] = {}
    for chunk in _chunks(sorted(set(speaker_ids))):
        rows = await session.execute(
            select(Speaker.id, Speaker.code, Speaker.receipt_public_key).where(
                Speaker.id.in_(chunk)
            )
        )
        for speaker_id, code, key in rows.tuples():
            found[speaker_id] = (code, base64.b64decode(key) if key else None)
    return found
