"""Importing a village's households and residents from a CSV (UTF-8, with or without BOM, or
CP949 as Excel on Korean Windows saves it): all rows or none.

Columns (header required, any order, more ignored): ``address`` (required), ``receiver`` (an
indoor receiver's speaker code), ``phone``, ``language`` (default ``ko``), ``channels``
(``sms``, ``web_push``, ``indoor_receiver``, separated by ``;`` or ``|``; default ``sms``),
``consented_on`` (``YYYY-MM-DD``, required with a phone), ``consent_version`` (default
``paper``). Rows with the same address are one household; a row without a phone is a household
only. An address already in the village is that household.

A file with any bad row imports nothing and answers 422 ``invalid_household_csv`` with every
problem by line (``lines``: line, code, Korean and English message), never the number itself.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import Principal
from gateway.errors import InvalidRequest
from gateway.places.models import City
from gateway.residents import service
from gateway.residents.crypto import InvalidPhoneNumber, PhoneCipher, normalise_phone
from gateway.residents.models import Channel, ConsentSource, Household, Resident
from gateway.residents.schemas import HouseholdImportReport
from gateway.settings import Settings

COLUMNS: Final = (
    "address",
    "receiver",
    "phone",
    "language",
    "channels",
    "consented_on",
    "consent_version",
)
MAX_ROWS: Final = 20_000
_LANGUAGE: Final = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?")
_CHANNEL_SPLIT: Final = re.compile(r"[;|]")


@dataclass(frozen=True)
class Problem:
    line: int
    code: str
    ko: str
    en: str


class HouseholdCsvRejected(InvalidRequest):
    code = "invalid_household_csv"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.line, p.code)))
        super().__init__(
            ko=f"CSV의 {len(self.problems)}개 문제로 아무것도 가져오지 않았습니다 (lines 참고).",
            en=f"The CSV has {len(self.problems)} problems; nothing was imported (see lines).",
        )

    def extra(self) -> dict[str, object]:
        return {
            "lines": [
                {"line": p.line, "code": p.code, "ko": p.ko, "en": p.en} for p in self.problems
            ]
        }


@dataclass(frozen=True)
class HouseholdRow:
    line: int
    address: str
    receiver: str | None
    number: str | None  # normalised
    language: str
    channels: tuple[str, ...]
    consented_at: datetime | None
    consent_version: str


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp949")
    except UnicodeDecodeError:
        raise HouseholdCsvRejected(
            [
                Problem(
                    1,
                    "invalid_encoding",
                    "UTF-8 또는 CP949(EUC-KR) CSV 파일이 아닙니다.",
                    "The file is neither UTF-8 nor CP949 (EUC-KR) text.",
                )
            ]
        ) from None


def _records(data: bytes) -> list[tuple[int, dict[str, str]]]:
    text = _decode(data)
    if "\x00" in text:
        raise HouseholdCsvRejected(
            [Problem(1, "invalid_encoding", "텍스트 CSV가 아닙니다.", "Not a text CSV file.")]
        )
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    records: list[tuple[int, dict[str, str]]] = []
    try:
        for record in reader:
            cells = [cell.strip() for cell in record]
            if not any(cells):
                continue
            if header is None:
                header = [cell.lower() for cell in cells]
                if "address" not in header:
                    raise HouseholdCsvRejected(
                        [
                            Problem(
                                reader.line_num,
                                "missing_column",
                                "머리글에 address 열이 없습니다.",
                                f"The header lacks address (columns: {', '.join(COLUMNS)}).",
                            )
                        ]
                    )
                continue
            values = dict.fromkeys(COLUMNS, "")
            for name, cell in zip(header, cells, strict=False):
                if name in values:
                    values[name] = cell
            records.append((reader.line_num, values))
            if len(records) > MAX_ROWS:
                raise HouseholdCsvRejected(
                    [
                        Problem(
                            reader.line_num,
                            "too_many_rows",
                            f"한 번에 {MAX_ROWS}행까지 가져올 수 있습니다.",
                            f"At most {MAX_ROWS} rows per file.",
                        )
                    ]
                )
    except csv.Error as exc:
        raise HouseholdCsvRejected(
            [Problem(reader.line_num, "malformed_csv", f"CSV 형식 오류 ({exc}).", f"{exc}.")]
        ) from None
    if header is None or not records:
        raise HouseholdCsvRejected(
            [Problem(1, "empty_file", "데이터 행이 없습니다.", "There are no data rows.")]
        )
    return records


def _row(line: int, values: dict[str, str], problems: list[Problem]) -> HouseholdRow | None:
    before = len(problems)

    def bad(code: str, ko: str, en: str) -> None:
        problems.append(Problem(line, code, ko, en))

    address = values["address"]
    if not address:
        bad("missing_address", "주소가 비어 있습니다.", "The address is empty.")
    elif len(address) > 200:
        bad("invalid_address", "주소는 200자까지입니다.", "The address is over 200 characters.")
    number = None
    if values["phone"]:
        try:
            number = normalise_phone(values["phone"])
        except InvalidPhoneNumber as exc:
            bad(exc.code, exc.message_ko, exc.message_en)
    language = values["language"] or "ko"
    if not _LANGUAGE.fullmatch(language):
        bad("invalid_language", "언어 코드가 올바르지 않습니다 (예: ko, en, vi).", "Bad language.")
    channels = tuple(
        sorted({c.strip() for c in _CHANNEL_SPLIT.split(values["channels"] or "sms") if c.strip()})
    )
    known = {c.value for c in Channel}
    if not channels or set(channels) - known:
        bad(
            "invalid_channel",
            "받는 방법은 sms, web_push, indoor_receiver 중에서 고릅니다.",
            "Channels are sms, web_push or indoor_receiver.",
        )
    consented_at = None
    if number is not None:
        try:
            day = date.fromisoformat(values["consented_on"])
            consented_at = datetime.combine(day, time(), tzinfo=UTC)
        except ValueError:
            bad(
                "invalid_consent_date",
                "전화번호가 있는 행에는 동의일(consented_on, YYYY-MM-DD)이 필요합니다.",
                "A row with a phone needs consented_on as YYYY-MM-DD.",
            )
    version = values["consent_version"] or "paper"
    if len(version) > 32:
        bad("invalid_consent_version", "동의서 버전은 32자까지입니다.", "consent_version > 32.")
    if len(problems) > before:
        return None
    return HouseholdRow(
        line=line,
        address=address,
        receiver=values["receiver"] or None,
        number=number,
        language=language,
        channels=channels,
        consented_at=consented_at,
        consent_version=version,
    )


def parse_households(data: bytes, *, now: datetime) -> list[HouseholdRow]:
    problems: list[Problem] = []
    rows: list[HouseholdRow] = []
    first_line: dict[str, int] = {}
    for line, values in _records(data):
        row = _row(line, values, problems)
        if row is None:
            continue
        if row.consented_at is not None and row.consented_at > now:
            problems.append(
                Problem(line, "invalid_consent_date", "동의일이 미래입니다.", "Future date.")
            )
            continue
        if row.number is not None:
            first = first_line.setdefault(row.number, line)
            if first != line:
                problems.append(
                    Problem(
                        line,
                        "duplicate_resident",
                        f"같은 전화번호가 {first}행에도 있습니다.",
                        f"The same phone number is on line {first}.",
                    )
                )
                continue
        rows.append(row)
    if problems:
        raise HouseholdCsvRejected(problems)
    return rows


async def import_households(
    session: AsyncSession,
    city: City,
    cipher: PhoneCipher,
    settings: Settings,
    principal: Principal,
    village_id: int,
    data: bytes,
    *,
    now: datetime,
) -> HouseholdImportReport:
    await service.check_village(session, city, principal, village_id)
    rows = parse_households(data, now=now)
    problems: list[Problem] = []
    receivers = await _receivers(session, city, village_id, rows, problems)
    numbers = [r.number for r in rows if r.number is not None]
    taken = await _taken(session, cipher, city.id, numbers)
    for row in rows:
        if row.number is not None and row.number in taken:
            problems.append(
                Problem(
                    row.line,
                    "duplicate_resident",
                    "이미 등록된 전화번호입니다.",
                    "This phone number is already signed up.",
                )
            )
    if problems:
        raise HouseholdCsvRejected(problems)

    existing = {
        h.address: h
        for h in await session.scalars(select(Household).where(Household.village_id == village_id))
    }
    households_created = residents_created = 0
    for row in rows:
        household = existing.get(row.address)
        if household is None:
            household = Household(
                city_id=city.id,
                village_id=village_id,
                address=row.address,
                receiver_id=receivers.get(row.receiver) if row.receiver else None,
                hold_non_urgent=False,
                created_at=now,
                updated_at=now,
            )
            try:
                async with session.begin_nested():  # another import of the same address
                    session.add(household)
                    await session.flush()
            except IntegrityError:
                raise service.duplicate_household() from None
            existing[row.address] = household
            households_created += 1
        elif row.receiver and household.receiver_id is None:
            household.receiver_id = receivers[row.receiver]
        if row.number is None or row.consented_at is None:
            continue
        await service.insert_resident(
            session,
            cipher,
            settings,
            city.id,
            service.NewResident(
                village_id=village_id,
                household_id=household.id,
                number=row.number,
                language=row.language,
                channels=row.channels,
                source=ConsentSource.IMPORT,
                consent_version=row.consent_version,
                consented_at=row.consented_at,
            ),
            now=now,
        )
        residents_created += 1
    await session.flush()
    return HouseholdImportReport(
        rows=len(rows), households_created=households_created, residents_created=residents_created
    )


async def _receivers(
    session: AsyncSession,
    city: City,
    village_id: int,
    rows: Sequence[HouseholdRow],
    problems: list[Problem],
) -> dict[str, int]:
    from gateway.speakers.service import speaker_ids_by_code

    codes = {r.receiver for r in rows if r.receiver}
    ids = await speaker_ids_by_code(session, city.id, codes)
    fine: dict[str, int] = {}
    for code in sorted(codes):
        if code not in ids:
            continue
        try:
            await service.check_receiver(session, city, village_id, ids[code])
        except InvalidRequest:
            continue
        fine[code] = ids[code]
    for row in rows:
        if row.receiver and row.receiver not in fine:
            problems.append(
                Problem(
                    row.line,
                    "invalid_receiver",
                    f"수신기 '{row.receiver[:64]}'은(는) 이 마을의 가정용 수신기가 아닙니다.",
                    f"Receiver '{row.receiver[:64]}' is not an indoor receiver of this village.",
                )
            )
    return fine


async def _taken(
    session: AsyncSession, cipher: PhoneCipher, city_id: int, numbers: Sequence[str]
) -> set[str]:
    """Which of ``numbers`` are signed up already, by their keyed hashes (nothing decrypted)."""
    by_lookup = {lookup: n for n in numbers for lookup in cipher.lookups(n)}
    found: set[str] = set()
    keys = sorted(by_lookup)
    for start in range(0, len(keys), 900):
        chunk = keys[start : start + 900]
        for lookup in await session.scalars(
            select(Resident.phone_lookup).where(
                Resident.city_id == city_id, Resident.phone_lookup.in_(chunk)
            )
        ):
            if lookup is not None:
                found.add(by_lookup[lookup])
    return found
