"""Speakers in bulk: a CSV of speakers read, checked and upserted in one go."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, get_args

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.places import csv_import
from gateway.places import service as places
from gateway.places.csv_import import CsvRejected, CsvRow, RowProblem
from gateway.places.models import City
from gateway.speakers.models import Speaker
from gateway.speakers.schemas import (
    CODEC_ORDER,
    Codec,
    Kind,
    SpeakersImportReport,
)
from gateway.speakers.service import in_chunks

SPEAKER_COLUMNS: Final = ("speaker_code", "village_code", "kind", "codecs")
DEFAULT_CODECS: Final[tuple[Codec, ...]] = ("opus", "mp3")
_KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
_CODEC_SPLIT: Final = re.compile(r"[;|,\s]+")


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
        for chunk in in_chunks(sorted({r.code for r in rows}))
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
