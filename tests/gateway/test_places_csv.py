"""Importing districts and villages from CSV: parsing, upserts, and all-or-nothing refusals."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.places import csv_import
from gateway.places.csv_import import CsvRejected, PlaceRow
from tests.gateway.conftest import Api

HEADER = "district_code,district_name,village_code,village_name\n"


def _rejected(data: bytes) -> list[tuple[int, str]]:
    with pytest.raises(CsvRejected) as caught:
        csv_import.parse_places(data)
    return [(p.line, p.en) for p in caught.value.problems]


def test_rows_with_or_without_bom() -> None:
    text = HEADER + 'd01,문산읍,d01-v001,상촌리\r\nd01,문산읍, d01-v002 ,"하촌리"\n'
    expected = [
        PlaceRow(2, "d01", "문산읍", "d01-v001", "상촌리"),
        PlaceRow(3, "d01", "문산읍", "d01-v002", "하촌리"),
    ]
    assert csv_import.parse_places(text.encode()) == expected
    assert csv_import.parse_places(text.encode("utf-8-sig")) == expected


def test_header_order_case_and_extra_columns_do_not_matter() -> None:
    text = "Village_Name,village_code,note,district_name,DISTRICT_CODE\n상촌리,v1,메모,문산읍,d01\n"
    assert csv_import.parse_places(text.encode()) == [PlaceRow(2, "d01", "문산읍", "v1", "상촌리")]


def test_excel_cp949_is_accepted() -> None:
    text = HEADER + "d01,문산읍,d01-v001,상촌리\n"
    assert csv_import.parse_places(text.encode("cp949"))[0].village_name == "상촌리"


def test_every_bad_row_is_reported_by_line() -> None:
    text = (
        HEADER
        + "d01,문산읍,d01-v001,상촌리\n"
        + "d01,문산읍,bad code,하촌리\n"  # line 3
        + "\n"
        + "d01,문산읍,d01-v003,\n"  # line 5
        + "d01,문산면,d01-v004,신촌리\n"  # line 6: the district's name differs from line 2
        + "d02,내동면,d01-v001,중촌리\n"  # line 7: village code already on line 2
        + "d03\n"  # line 8: three cells missing
    )
    problems = _rejected(text.encode())
    assert [line for line, _ in problems] == [3, 5, 6, 7, 8, 8, 8]
    assert "village_code 'bad code'" in problems[0][1]
    assert "line 2" in problems[2][1]
    assert "line 2" in problems[3][1]


def test_missing_columns_empty_files_and_binary_are_refused() -> None:
    assert "village_name" in _rejected(b"district_code,district_name,village_code\nd,n,v\n")[0][1]
    assert _rejected(b"")[0] == (1, "the file is empty.")
    assert _rejected(HEADER.encode())[0] == (1, "there are no data rows.")
    assert _rejected(b"\xff\xfe\x00\x00\xc3")[0][0] == 1


def test_the_message_lists_a_bounded_number_of_rows() -> None:
    text = HEADER + "".join(f"d01,문산읍,bad code {n},상촌리\n" for n in range(100))
    with pytest.raises(CsvRejected) as caught:
        csv_import.parse_places(text.encode())
    assert len(caught.value.problems) == 100
    assert caught.value.detail.endswith("and 80 more")


async def _import(api: Api, data: bytes) -> httpx.Response:
    return await api.client.post(
        "/api/v1/places/import", files={"file": ("places.csv", data, "text/csv")}
    )


async def _villages(api: Api) -> dict[str, dict[str, Any]]:
    page = (await api.client.get("/api/v1/villages")).json()
    return {v["code"]: v for v in page["items"]}


async def test_import_then_upsert(api: Api) -> None:
    first = (
        HEADER
        + "d01,문산읍,d01-v001,상촌리\n"
        + "d01,문산읍,d01-v002,하촌리\n"
        + "d02,내동면,d02-v001,독산리\n"
    )
    response = await _import(api, first.encode("utf-8-sig"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "rows": 3,
        "districts_created": 2,
        "districts_updated": 0,
        "villages_created": 3,
        "villages_updated": 0,
    }
    villages = await _villages(api)
    speaker = await api.client.post(
        "/api/v1/speakers", json={"code": "s1", "village_id": villages["d01-v002"]["id"]}
    )
    assert speaker.status_code == 201

    second = (
        HEADER
        + "d01,문산읍,d01-v001,상촌마을\n"  # renamed
        + "d02,내동면(신),d01-v002,하촌리\n"  # moved, and its district renamed
        + "d03,정촌면,d03-v001,예하리\n"  # new
    )
    response = await _import(api, second.encode())
    assert response.json() == {
        "rows": 3,
        "districts_created": 1,
        "districts_updated": 1,
        "villages_created": 1,
        "villages_updated": 2,
    }
    villages = await _villages(api)
    assert villages["d01-v001"]["name"] == "상촌마을"
    assert villages["d01-v002"]["district_code"] == "d02"
    assert villages["d01-v002"]["district_name"] == "내동면(신)"
    assert villages["d02-v001"]["name"] == "독산리", "villages missing from the file stay"
    moved = (await api.client.get(f"/api/v1/speakers/{speaker.json()['id']}")).json()
    assert moved["district_id"] == villages["d01-v002"]["district_id"]

    again = await _import(api, second.encode())
    assert again.json()["villages_updated"] == again.json()["districts_updated"] == 0


async def test_a_bad_row_imports_nothing(api: Api) -> None:
    text = HEADER + "d01,문산읍,d01-v001,상촌리\n" + "d01,문산읍,d01/v002,하촌리\n"
    response = await _import(api, text.encode())
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_csv"
    assert "3행" in body["detail"]
    assert "line 3" in body["detail"]
    assert (await api.client.get("/api/v1/districts")).json()["total"] == 0


async def test_an_oversized_file_is_refused(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_import, "MAX_CSV_BYTES", 100)
    response = await _import(api, (HEADER + "d01,문산읍,d01-v001,상촌리\n" * 10).encode())
    assert response.status_code == 413
    assert response.json()["error"] == "csv_too_large"


# The JSON column is the same on both databases; the upsert is tested on both above.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_languages_column_sets_keeps_or_resets_a_villages_languages(api: Api) -> None:
    header = HEADER.strip() + ",languages\n"
    first = header + 'd01,문산읍,d01-v001,상촌리,"vi, zh"\n' + "d01,문산읍,d01-v002,하촌리,th\n"
    assert (await _import(api, first.encode())).status_code == 200
    villages = await _villages(api)
    assert villages["d01-v001"]["languages"] == ["vi", "zh"]
    assert villages["d01-v002"]["languages"] == ["th"]

    second = header + "d01,문산읍,d01-v001,상촌리,\n" + "d01,문산읍,d01-v002,하촌리,-\n"
    assert (await _import(api, second.encode())).json()["villages_updated"] == 1
    villages = await _villages(api)
    assert villages["d01-v001"]["languages"] == ["vi", "zh"], "a blank cell leaves them"
    assert villages["d01-v002"]["languages"] == [], "'-': the city's again"

    assert _rejected((header + "d01,문산읍,d01-v001,상촌리,vi fr\n").encode())[0][0] == 2
