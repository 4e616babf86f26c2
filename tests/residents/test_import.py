"""Importing households and residents from CSV: UTF-8 with or without BOM, CP949 from Excel,
every bad line reported with its code, and nothing taken from a bad file."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.flow.conftest import Stack
from tests.residents.conftest import villages

# The stack on SQLite: the PostgreSQL path is walked by test_households_api.py.
pytestmark = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)

HEADER = "address,receiver,phone,language,channels,consented_on\n"


async def _import(stack: Stack, vid: int, data: bytes) -> Any:
    return await stack.client.post(
        f"/api/v1/villages/{vid}/households:import",
        files={"file": ("households.csv", data, "text/csv")},
    )


async def test_good_files_in_either_encoding(stack: Stack) -> None:
    vid = (await villages(stack))[0]["id"]
    receiver = await stack.client.post(
        "/api/v1/speakers", json={"code": "rcv-1", "village_id": vid, "kind": "household_receiver"}
    )
    assert receiver.status_code == 201
    day = (stack.clock.now() - timedelta(days=3)).date().isoformat()
    utf8 = (
        HEADER
        + f"상촌리 1,rcv-1,010-1111-2222,ko,sms;web_push,{day}\n"
        + f"상촌리 1,,+82 10 1111 3333,vi,sms,{day}\n"
        + "상촌리 2,,,,,\n"
    )
    done = await _import(stack, vid, b"\xef\xbb\xbf" + utf8.encode())
    assert done.status_code == 200, done.text
    assert done.json() == {"rows": 3, "households_created": 2, "residents_created": 2}
    cp949 = HEADER + f"하촌리 7,,010-4444-5555,ko,indoor_receiver,{day}\n"
    done = await _import(stack, vid, cp949.encode("cp949"))
    assert done.json() == {"rows": 1, "households_created": 1, "residents_created": 1}
    households = (await stack.client.get(f"/api/v1/villages/{vid}/households")).json()["items"]
    assert sorted(h["address"] for h in households) == ["상촌리 1", "상촌리 2", "하촌리 7"]
    first = next(h for h in households if h["address"] == "상촌리 1")
    assert (first["receiver_id"], first["resident_count"]) == (receiver.json()["id"], 2)
    residents = (await stack.client.get(f"/api/v1/villages/{vid}/residents")).json()["items"]
    assert sorted(r["phone"] for r in residents) == [
        "010-****-2222",
        "010-****-3333",
        "010-****-5555",
    ]
    assert {r["consent_source"] for r in residents} == {"import"}


async def test_a_bad_file_imports_nothing_and_names_every_line(stack: Stack) -> None:
    vid = (await villages(stack))[0]["id"]
    day = (stack.clock.now() - timedelta(days=3)).date().isoformat()
    await _import(stack, vid, (HEADER + f"먼저 1,,010-9999-0000,ko,sms,{day}\n").encode())
    bad = (
        HEADER
        + f"가 1,,010-1234-5678,ko,sms,{day}\n"  # fine, but the file is refused whole
        + f",,010-1234-0001,ko,sms,{day}\n"  # no address
        + f"가 2,,02-123-4567,ko,sms,{day}\n"  # not a mobile number
        + f"가 3,,010-1234-5678,ko,sms,{day}\n"  # the same number as line 2
        + f"가 4,,010-9999-0000,ko,sms,{day}\n"  # signed up already
        + "가 5,,010-1234-0002,ko,sms,2026-13-01\n"  # no such date
        + f"가 6,,010-1234-0003,ko,fax,{day}\n"  # no such channel
        + f"가 7,nope,,,,{day}\n"  # no such receiver
    )
    refused = await _import(stack, vid, bad.encode())
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["error"] == "invalid_household_csv"
    assert [(p["line"], p["code"]) for p in body["lines"]] == [
        (3, "missing_address"),
        (4, "invalid_phone_number"),
        (5, "duplicate_resident"),
        (7, "invalid_consent_date"),
        (8, "invalid_channel"),
    ]
    assert all(p["ko"] and p["en"] for p in body["lines"])
    assert "02-123-4567" not in refused.text
    # Once the rows read well, what the database knows is checked: also line by line.
    later = (
        HEADER
        + f"가 1,,010-1234-5678,ko,sms,{day}\n"
        + f"가 4,,010-9999-0000,ko,sms,{day}\n"
        + "가 7,nope,,,,\n"
    )
    refused = await _import(stack, vid, later.encode())
    assert [(p["line"], p["code"]) for p in refused.json()["lines"]] == [
        (3, "duplicate_resident"),
        (4, "invalid_receiver"),
    ]
    households = (await stack.client.get(f"/api/v1/villages/{vid}/households")).json()
    assert [h["address"] for h in households["items"]] == ["먼저 1"]


async def test_files_that_are_not_a_households_csv(stack: Stack) -> None:
    vid = (await villages(stack))[0]["id"]
    for data, code in (
        ("address,phone\n상촌리 1,010-1234-5678\n".encode("utf-16"), "invalid_encoding"),
        (b"", "empty_file"),
        (b"name,phone\nx,010-1234-5678\n", "missing_column"),
        (b'address\n"open quote\n', "malformed_csv"),
    ):
        refused = await _import(stack, vid, data)
        assert refused.status_code == 422, refused.text
        assert [p["code"] for p in refused.json()["lines"]] == [code]
