"""A broadcast in several languages: Korean spoken first, then the city's languages the
broadcast has a text in, each after a pause; residents read it in their own language."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from audio.decode import Limits, decode_file
from gateway.auth import Role
from tests.flow.conftest import Stack, proof_of
from tests.flow.test_broadcast_flow import _ack, _commands, _everyone_online, recording
from tests.flow.test_roles import _people, _send
from wire import contract
from wire.contract import AckStatus

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


async def _spoken(
    stack: Stack, broadcast_id: str, command: contract.Command | None = None
) -> np.ndarray:
    """The audio the speakers were told to play (by ``command``: its only one), decoded."""
    if command is None:
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


async def _fleet(stack: Stack) -> dict[int, list[str]]:
    """Speaker codes by village id."""
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    by_village: dict[int, list[str]] = {}
    for speaker in fleet:
        by_village.setdefault(int(speaker["village_id"]), []).append(speaker["code"])
    return by_village


# One database is enough: the first test of this module reads texts on PostgreSQL.
@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
async def test_each_village_hears_its_own_languages_and_proves_that_audio(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _everyone_online(stack)
    first, second = await _village_id(stack, "d01-v001"), await _village_id(stack, "d01-v003")
    place = (await stack.client.get(f"/api/v1/villages/{first}")).json()
    for languages, code in ((["fr"], "unknown_language"), (["ko", "vi"], "unknown_language")):
        refused = await stack.client.patch(
            f"/api/v1/villages/{second}", json={"languages": languages}
        )
        assert (refused.status_code, refused.json()["error"]) == (422, code)
    changed = await stack.client.patch(
        f"/api/v1/villages/{second}", json={"languages": ["vi-VN", "vi"]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["languages"] == ["vi"]
    assert (await stack.client.get(f"/api/v1/villages/{first}")).json()["languages"] == []

    worker = stack.app.state.runtime.worker
    made = worker.transcode
    transcodes = 0

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal transcodes
        transcodes += 1
        return await made(*args, **kwargs)

    monkeypatch.setattr(worker, "transcode", counted)
    texts = {"vi": "Ngày mai có mưa lớn.", "zh": "明天有大雨。"}
    stack.clock.advance(1)
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={
            "category": "administrative",
            "all_villages": "true",
            "text": "내일 큰 비가 옵니다.",
            "texts": json.dumps(texts),
        },
    )
    assert response.status_code == 201, response.text
    broadcast = response.json()
    assert transcodes == 2, "one audio per distinct set: ko+vi+zh (the city's) and ko+vi"
    await stack.publish_pending()

    by_village = await _fleet(stack)
    commands = {
        topic: command
        for topic, command in _commands(stack)
        if command.broadcast_id == broadcast["id"]
    }
    city_code = stack.settings.city_code
    # A topic carries one audio: the city's is not used, nor that of the district whose
    # villages differ (published to village by village); the other district's is.
    assert contract.command_topic_all(city_code) not in commands
    assert contract.command_topic_district(city_code, place["district_code"]) not in commands
    assert contract.command_topic_district(city_code, "d02") in commands
    heard = {
        village: commands[contract.command_topic_village(city_code, code)]
        for village, code in ((first, "d01-v001"), (second, "d01-v003"))
    }
    city, vi_only = heard[first].audio[0], heard[second].audio[0]
    assert city.sha256 != vi_only.sha256
    assert city.duration_ms > vi_only.duration_ms + 1000, "the Chinese reading is left out"
    assert _pauses(await _spoken(stack, broadcast["id"], heard[second])) == 1
    assert _pauses(await _spoken(stack, broadcast["id"], heard[first])) == 2

    # Each speaker proves the audio it was sent: the other village's is not proof.
    honest, borrowed, own = by_village[first][0], *by_village[second]
    _ack(stack, heard[first], honest, AckStatus.PLAYED)
    _ack(stack, heard[second], borrowed, AckStatus.PLAYED, **proof_of(heard[first]))
    _ack(stack, heard[second], own, AckStatus.PLAYED)
    await stack.deliver()
    detail = (await stack.client.get(f"/api/v1/broadcasts/{broadcast['id']}")).json()
    states = {s["code"]: s for v in detail["village_deliveries"] for s in v["speakers"]}
    assert states[honest]["state"] == states[own]["state"] == "played"
    assert (states[borrowed]["state"], states[borrowed]["reason"]) == ("failed", "bad_proof")

    # The residents' page links each village to the audio its speakers were sent.
    for village in (first, second):
        notices = await stack.client.get(f"/api/v1/notices/villages/{village}")
        [notice] = [n for n in notices.json()["items"] if n["id"] == broadcast["id"]]
        assert any(ref.sha256 in notice["audio_url"] for ref in heard[village].audio)


@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
async def test_a_template_carries_its_texts_into_the_broadcast(stack: Stack) -> None:
    await _everyone_online(stack)
    village = await _village_id(stack, "d01-v001")
    template = {
        "name": "단수 안내",
        "category": "administrative",
        "body": "{날짜}에 단수가 있습니다.",
        "texts": {"vi-VN": "Ngày {날짜} sẽ bị cắt nước.", "zh": "{날짜}停水。"},
    }
    for texts, code in (
        ({"fr": "Coupure d'eau le {날짜}."}, "unknown_language"),
        ({"vi": "Ngày {시각} sẽ bị cắt nước."}, "invalid_template"),
        ({"zh": "!!!"}, "unspeakable_text"),
    ):
        refused = await stack.client.post("/api/v1/templates", json={**template, "texts": texts})
        assert (refused.status_code, refused.json()["error"]) == (422, code), texts
    created = await stack.client.post("/api/v1/templates", json=template)
    assert created.status_code == 201, created.text
    assert created.json()["texts"] == {"vi": "Ngày {날짜} sẽ bị cắt nước.", "zh": "{날짜}停水。"}

    # The template's texts, filled; a text the request gives for a language wins over its own.
    sent = await _typed(
        stack,
        village,
        template_id=created.json()["id"],
        values=json.dumps({"날짜": "5"}),
        texts=json.dumps({"zh": "5日停水。"}),
    )
    assert sent["text"] == "5에 단수가 있습니다."
    assert sent["texts"] == {"vi": "Ngày 5 sẽ bị cắt nước.", "zh": "5日停水。"}
    assert _pauses(await _spoken(stack, sent["id"])) == 2, "read in Vietnamese and Chinese"

    # Scheduled from it, to villages reading different sets: each is sent its own reading.
    other = await _village_id(stack, "d01-v003")
    changed = await stack.client.patch(f"/api/v1/villages/{other}", json={"languages": ["vi"]})
    assert changed.status_code == 200, changed.text
    scheduled = await stack.client.post(
        "/api/v1/schedules",
        data={
            "category": "administrative",
            "village_ids": [village, other],
            "template_id": created.json()["id"],
            "values": json.dumps({"날짜": "6"}),
            "send_at": (stack.clock.now() + timedelta(minutes=10)).isoformat(),
        },
    )
    assert scheduled.status_code == 201, scheduled.text
    stack.clock.advance(11 * 60)
    assert (await stack.app.state.scheduler.fire_due())["fired"] == 1
    await stack.publish_pending()
    city_code = stack.settings.city_code
    fired = {
        topic: command.audio[0].duration_ms
        for topic, command in _commands(stack)
        if command.text == "6에 단수가 있습니다."
    }
    both = fired[contract.command_topic_village(city_code, "d01-v001")]
    vi_only = fired[contract.command_topic_village(city_code, "d01-v003")]
    assert both > vi_only + 1000, "d01-v003 hears no Chinese"
