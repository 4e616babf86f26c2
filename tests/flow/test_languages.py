"""A broadcast in several languages: Korean spoken first, then the city's languages the
broadcast has a text in, each after a pause; residents read it in their own language."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import numpy as np
import pytest

from audio.decode import Limits, decode_file
from gateway.auth import Role
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _commands, _everyone_online, recording
from tests.flow.test_roles import _people, _send

__all__ = ["recording"]  # the module-scoped fixture, shared

RATE = 16000


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    """This module's gateway speaks Vietnamese and Chinese after Korean."""
    return {"spoken_languages": "vi,zh"}


async def _village_id(stack: Stack, code: str) -> int:
    found = await stack.client.get("/api/v1/villages", params={"q": code})
    [village] = [v for v in found.json()["items"] if v["code"] == code]
    return int(village["id"])


async def _typed(stack: Stack, village_id: int, **form: Any) -> dict[str, Any]:
    stack.clock.advance(1)
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "village_ids": [village_id], **form},
    )
    assert response.status_code == 201, response.text
    await stack.publish_pending()
    body: dict[str, Any] = response.json()
    return body


async def _spoken(stack: Stack, broadcast_id: str) -> np.ndarray:
    """The audio the speakers were told to play, decoded."""
    [command] = [c for _, c in _commands(stack) if c.broadcast_id == broadcast_id]
    ref = command.audio[0]
    if ref.url is not None:
        response = await stack.client.get(ref.url)
        assert response.status_code == 200, response.text
        data = response.content
    else:
        assert ref.data is not None
        data = base64.b64decode(ref.data)
    _, samples = decode_file(data, Limits(max_bytes=1 << 24, max_duration_s=600.0), RATE)
    return samples


def _pauses(samples: np.ndarray) -> int:
    """Silences of at least 0.8 s between sounds (the pause between languages is 1 s; a clause's
    is a quarter of that)."""
    quiet = np.abs(samples) < 2e-3
    loud = np.flatnonzero(~quiet)
    gaps = np.diff(loud)
    return int(np.count_nonzero(gaps > 0.8 * RATE))


# PostgreSQL here; the CAP languages test runs the same on SQLite.
@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
async def test_korean_then_each_city_language_and_residents_read_their_own(
    stack: Stack,
) -> None:
    await _everyone_online(stack)
    village = await _village_id(stack, "d01-v001")
    texts = {"vi": "Ngày mai có mưa lớn.", "zh": "明天有大雨。", "tl": "Malakas na ulan bukas."}
    several = await _typed(
        stack, village, text="내일 큰 비가 옵니다.", texts=json.dumps(texts), title="호우"
    )
    only_vi = await _typed(
        stack, village, text="내일 큰 비가 옵니다.", texts=json.dumps({"vi": texts["vi"]})
    )

    assert _pauses(await _spoken(stack, several["id"])) == 2, "vi and zh; tl has no voice"
    assert _pauses(await _spoken(stack, only_vi["id"])) == 1
    assert several["duration_ms"] > only_vi["duration_ms"] + 1000

    public = httpx.AsyncClient(transport=stack.client._transport, base_url="http://gateway")
    async with public:
        url = f"/api/v1/notices/villages/{village}"
        for lang, text, language in (
            ("vi-VN", texts["vi"], "vi"),
            ("tl", texts["tl"], "tl"),
            ("th", "내일 큰 비가 옵니다.", "ko"),
            (None, "내일 큰 비가 옵니다.", "ko"),
        ):
            params = {"lang": lang} if lang else {}
            items = (await public.get(url, params=params)).json()["items"]
            [notice] = [n for n in items if n["id"] == several["id"]]
            assert (notice["text"], notice["language"], notice["title"]) == (text, language, "호우")


# Refused before any database work: one database is enough.
@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
async def test_bad_texts_are_refused_before_anything_is_sent(stack: Stack) -> None:
    village = await _village_id(stack, "d01-v001")
    for texts, code in (
        ('{"fr": "Demain, forte pluie."}', "unknown_language"),
        ('{"ko": "내일 큰 비"}', "unknown_language"),
        ('["vi"]', "invalid_texts"),
        ('{"zh": "!!!"}', "unspeakable_text"),
    ):
        response = await stack.client.post(
            "/api/v1/broadcasts",
            data={
                "category": "administrative",
                "village_ids": [village],
                "text": "내일 큰 비가 옵니다.",
                "texts": texts,
            },
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == code, texts
    assert not stack.bus.published


@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
async def test_texts_wait_with_a_request_for_a_second_person(
    stack: Stack, recording: bytes
) -> None:
    people = await _people(stack)
    safety, admin = people[Role.SAFETY_OFFICER], people[Role.CITY_ADMIN]
    texts = {"vi": "Hãy sơ tán ngay.", "en": "Evacuate now."}
    response = await _send(
        stack, safety, recording, "disaster", all_villages="true", texts=json.dumps(texts)
    )
    assert response.status_code == 202, response.text
    approval = response.json()
    approved = await stack.client.post(
        f"/api/v1/approvals/{approval['id']}/approve", headers=admin.headers
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["broadcast"]["texts"] == texts
