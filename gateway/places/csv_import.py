"""Reading admin CSV uploads (encoding, header, row problems by line) and the places file's rows."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from fastapi import UploadFile

from audio.speech.languages import LANGUAGES, UnknownLanguage, validate_languages
from gateway.errors import InvalidRequest, MaeulError
from gateway.places.areas import CODE_PATTERN, AreaRefused, boundary_geometry
from wire.contract import is_valid_segment

MAX_CSV_BYTES: Final = 5 * 1024 * 1024
MAX_NAME_LENGTH: Final = 100
# The error message lists this many bad rows; the exception keeps them all.
LISTED_PROBLEMS: Final = 20
PLACE_COLUMNS: Final = ("district_code", "district_name", "village_code", "village_name")
# Optional: a place's geography (a blank cell leaves what is known as it is).
GEO_COLUMNS: Final = ("lat", "lon", "legal_code", "admin_code", "boundary")
PLACE_GEO_COLUMNS: Final = GEO_COLUMNS + tuple(f"district_{c}" for c in GEO_COLUMNS)
# Optional: the languages a village reads after Korean ("vi zh", or "vi,zh" quoted); blank
# leaves them as they are, "-" sets them back to the city's.
LANGUAGES_COLUMN: Final = "languages"


@dataclass(frozen=True)
class RowProblem:
    line: int
    ko: str
    en: str


class CsvRejected(InvalidRequest):
    """The whole file is refused; ``problems`` names every bad row by its line number."""

    code = "invalid_csv"

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: p.line))
        listed = self.problems[:LISTED_PROBLEMS]
        more = len(self.problems) - len(listed)
        ko = "; ".join(f"{p.line}행: {p.ko}" for p in listed)
        en = "; ".join(f"line {p.line}: {p.en}" for p in listed)
        if more:
            ko += f"; 외 {more}건"
            en += f"; and {more} more"
        super().__init__(
            ko=f"CSV에 잘못된 행이 있어 아무것도 반영하지 않았습니다. {ko}",
            en=f"The CSV has invalid rows; nothing was imported. {en}",
        )


class CsvTooLarge(MaeulError):
    status = 413
    code = "csv_too_large"


@dataclass(frozen=True)
class CsvRow:
    line: int
    values: dict[str, str]


@dataclass(frozen=True)
class PlaceRow:
    line: int
    district_code: str
    district_name: str
    village_code: str
    village_name: str
    # The geography the row gives (blank cells left out), for the village and its district.
    geo: Mapping[str, object] = field(default_factory=dict)
    district_geo: Mapping[str, object] = field(default_factory=dict)
    # The village's languages after Korean; None: the cell was blank (left as they are).
    languages: tuple[str, ...] | None = None


async def read_upload(upload: UploadFile) -> bytes:
    limit = MAX_CSV_BYTES
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise CsvTooLarge(
            ko=f"CSV 파일이 너무 큽니다 (최대 {limit // (1024 * 1024)}MB).",
            en=f"The CSV file is too large (at most {limit} bytes).",
        )
    return data


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Excel on Korean Windows saves "CSV" as CP949; accept it rather than turn staff away.
    try:
        return data.decode("cp949")
    except UnicodeDecodeError:
        raise CsvRejected(
            [RowProblem(1, "UTF-8 CSV 파일이 아닙니다.", "The file is not UTF-8 encoded CSV.")]
        ) from None


def read_rows(data: bytes, columns: Sequence[str], optional: Sequence[str] = ()) -> list[CsvRow]:
    """The data rows of a CSV whose header names every one of ``columns`` (in any order; more
    columns are ignored, ``optional`` ones read as blank when absent), with values stripped and
    blank lines skipped."""
    reader = csv.reader(io.StringIO(_decode(data), newline=""))
    rows: list[CsvRow] = []
    problems: list[RowProblem] = []
    header: list[str] | None = None
    try:
        for record in reader:
            cells = [cell.strip() for cell in record]
            if not any(cells):
                continue
            if header is None:
                header = [cell.lower() for cell in cells]
                missing = [c for c in columns if c not in header]
                if missing:
                    names = ", ".join(missing)
                    raise CsvRejected(
                        [
                            RowProblem(
                                reader.line_num,
                                f"머리글에 {names} 열이 없습니다 (필요: {', '.join(columns)}).",
                                f"the header lacks {names} (needed: {', '.join(columns)}).",
                            )
                        ]
                    )
                continue
            values = dict.fromkeys((*columns, *optional), "")
            for name, cell in zip(header, cells, strict=False):
                if name in values:
                    values[name] = cell
            rows.append(CsvRow(reader.line_num, values))
    except csv.Error as exc:
        problems.append(
            RowProblem(reader.line_num, f"CSV 형식 오류 ({exc}).", f"malformed CSV ({exc}).")
        )
    if header is None:
        problems.append(RowProblem(1, "빈 파일입니다.", "the file is empty."))
    elif not rows and not problems:
        problems.append(RowProblem(1, "데이터 행이 없습니다.", "there are no data rows."))
    if problems:
        raise CsvRejected(problems)
    return rows


def check_code(row: CsvRow, column: str, problems: list[RowProblem]) -> str:
    value = row.values[column]
    if not is_valid_segment(value):
        problems.append(
            RowProblem(
                row.line,
                f"{column} '{value[:70]}'은(는) 영문자, 숫자, '_', '-' 1-64자여야 합니다.",
                f"{column} '{value[:70]}' must be 1-64 letters, digits, '_' or '-'.",
            )
        )
    return value


def check_name(row: CsvRow, column: str, problems: list[RowProblem]) -> str:
    value = row.values[column]
    if not value or len(value) > MAX_NAME_LENGTH:
        problems.append(
            RowProblem(
                row.line,
                f"{column}은(는) 1-{MAX_NAME_LENGTH}자여야 합니다.",
                f"{column} must be 1-{MAX_NAME_LENGTH} characters.",
            )
        )
    return value


def parse_places(data: bytes) -> list[PlaceRow]:
    """Rows of ``district_code,district_name,village_code,village_name``; every problem in the
    file is collected before anything is refused."""
    problems: list[RowProblem] = []
    places: list[PlaceRow] = []
    district_names: dict[str, tuple[str, int]] = {}
    village_lines: dict[str, int] = {}
    district_geos: dict[str, tuple[Mapping[str, object], int]] = {}
    for row in read_rows(data, PLACE_COLUMNS, (*PLACE_GEO_COLUMNS, LANGUAGES_COLUMN)):
        before = len(problems)
        place = PlaceRow(
            line=row.line,
            district_code=check_code(row, "district_code", problems),
            district_name=check_name(row, "district_name", problems),
            village_code=check_code(row, "village_code", problems),
            village_name=check_name(row, "village_name", problems),
            geo=check_geo(row, "", problems),
            district_geo=check_geo(row, "district_", problems),
            languages=check_languages(row, problems),
        )
        if len(problems) > before:
            continue
        first = village_lines.setdefault(place.village_code, place.line)
        if first != place.line:
            problems.append(
                RowProblem(
                    place.line,
                    f"마을 코드 {place.village_code}이(가) {first}행에도 있습니다.",
                    f"village code {place.village_code} also appears on line {first}.",
                )
            )
            continue
        name, line = district_names.setdefault(
            place.district_code, (place.district_name, place.line)
        )
        if name != place.district_name:
            problems.append(
                RowProblem(
                    place.line,
                    f"읍·면·동 {place.district_code}의 이름이 {line}행('{name}')과 다릅니다.",
                    f"district {place.district_code} is named differently on line {line} "
                    f"('{name}').",
                )
            )
            continue
        if place.district_geo:
            given, line = district_geos.setdefault(
                place.district_code, (place.district_geo, place.line)
            )
            if given != place.district_geo:
                problems.append(
                    RowProblem(
                        place.line,
                        f"읍·면·동 {place.district_code}의 위치·코드·경계가 {line}행과 다릅니다.",
                        f"district {place.district_code} has other geography on line {line}.",
                    )
                )
                continue
        places.append(place)
    if problems:
        raise CsvRejected(problems)
    return places


def check_languages(row: CsvRow, problems: list[RowProblem]) -> tuple[str, ...] | None:
    cell = row.values.get(LANGUAGES_COLUMN, "").strip()
    if not cell:
        return None
    if cell == "-":
        return ()
    try:
        return tuple(validate_languages(re.split(r"[\s,;]+", cell.strip(",; "))))
    except UnknownLanguage:
        problems.append(
            RowProblem(
                row.line,
                f"languages '{cell[:70]}': 지원하지 않는 언어가 있습니다 "
                f"(쓸 수 있는 언어: {', '.join(t for t in LANGUAGES if t != 'ko')}).",
                f"languages '{cell[:70]}': unknown language "
                f"(known: {', '.join(t for t in LANGUAGES if t != 'ko')}).",
            )
        )
        return None


def check_geo(row: CsvRow, prefix: str, problems: list[RowProblem]) -> dict[str, object]:
    """The geography a row gives under ``prefix``: lat and lon together, 10-digit codes, a
    GeoJSON boundary; blank cells are left out."""
    cells = {c: row.values.get(prefix + c, "") for c in GEO_COLUMNS}
    geo: dict[str, object] = {}

    def refuse(column: str, ko: str, en: str) -> None:
        problems.append(RowProblem(row.line, f"{prefix}{column}: {ko}", f"{prefix}{column}: {en}"))

    if bool(cells["lat"]) != bool(cells["lon"]):
        refuse("lat", "lat과 lon은 함께 주세요.", "lat and lon go together.")
    elif cells["lat"]:
        try:
            lat, lon = float(cells["lat"]), float(cells["lon"])
        except ValueError:
            lat = lon = math.nan
        if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
            refuse(
                "lat",
                "위도 -90~90, 경도 -180~180의 수여야 합니다.",
                "must be numbers, lat -90..90 and lon -180..180.",
            )
        else:
            geo.update(lat=lat, lon=lon)
    for column in ("legal_code", "admin_code"):
        if cells[column] and not CODE_PATTERN.match(cells[column]):
            refuse(column, "숫자 10자리여야 합니다.", "must be 10 digits.")
        elif cells[column]:
            geo[column] = cells[column]
    if cells["boundary"]:
        try:
            boundary = json.loads(cells["boundary"])
            boundary_geometry(boundary)
        except (ValueError, RecursionError, AreaRefused):
            refuse(
                "boundary",
                "변이 교차하지 않는 GeoJSON Polygon 또는 MultiPolygon이어야 합니다.",
                "must be a GeoJSON Polygon or MultiPolygon that does not cross itself.",
            )
        else:
            geo["boundary"] = boundary
    return geo
