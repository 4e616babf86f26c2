"""Spoken previews are limited per person: a few running or waiting at once, so many a minute."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from audio.worker import TranscodeWorker
from gateway.auth import Role
from tests.audio import jobs
from tests.flow.conftest import Stack
from tests.support.people import access_token, bearer, create_user

PREVIEW = "/api/v1/speech/preview"
# A safety net for a broken worker only: nothing here asserts how long anything takes.
HANG_S = 60.0

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_S):
        while not condition():  # noqa: ASYNC110 - polling the worker's line
            await asyncio.sleep(0.02)


async def _other_person(stack: Stack) -> dict[str, str]:
    await create_user(stack.client, "officer-preview", Role.CITY_ADMIN, display_name="미리듣기")
    return bearer(await access_token(stack.client, "officer-preview"))


async def test_a_person_with_two_previews_in_line_gets_429_preview_busy(
    stack: Stack, tmp_path: Path
) -> None:
    worker: TranscodeWorker = stack.app.state.runtime.worker
    release, log = tmp_path / "release", tmp_path / "started.log"
    # An upload holding the only ordinary slot: the previews wait in line behind it.
    holder = asyncio.create_task(
        worker.run_at(10, jobs.wait_for_file, str(release), "upload", str(log))
    )
    first_two = [
        asyncio.create_task(stack.client.post(PREVIEW, json={"text": f"미리듣기 {n}번입니다."}))
        for n in (1, 2)
    ]
    await until(lambda: worker.queued == 2)

    third = await stack.client.post(PREVIEW, json={"text": "세 번째 미리듣기입니다."})
    other = asyncio.create_task(
        stack.client.post(
            PREVIEW,
            json={"text": "다른 사람의 미리듣기입니다."},
            headers=await _other_person(stack),
        )
    )
    await until(lambda: worker.queued == 3)
    release.touch()
    async with asyncio.timeout(HANG_S):
        answers = await asyncio.gather(holder, *first_two, other)

    assert third.status_code == 429, third.text
    assert third.json()["error"] == "preview_busy"
    assert "미리듣기" in third.json()["detail"]
    assert "Retry-After" in third.headers
    assert [a.status_code for a in answers[1:]] == [200, 200, 200]
    after = await stack.client.post(PREVIEW, json={"text": "이제 다시 됩니다."})
    assert after.status_code == 200, after.text


async def test_previews_beyond_the_rate_get_429_until_the_minute_has_passed(
    stack: Stack,
) -> None:
    stack.app.state.preview_gate.per_minute = 2
    statuses = [
        (await stack.client.post(PREVIEW, json={"text": f"{n}번째 문구입니다."})).status_code
        for n in range(3)
    ]
    refused = await stack.client.post(PREVIEW, json={"text": "한 번 더 해 봅니다."})
    stack.clock.advance(61)
    later = await stack.client.post(PREVIEW, json={"text": "1분 뒤에 다시 해 봅니다."})

    assert statuses == [200, 200, 429]
    assert refused.json()["error"] == "preview_rate_limited"
    assert later.status_code == 200, later.text


async def test_unspeakable_text_does_not_count_against_the_person(stack: Stack) -> None:
    stack.app.state.preview_gate.per_minute = 1
    refused = await stack.client.post(PREVIEW, json={"text": "!!! ???"})
    spoken = await stack.client.post(PREVIEW, json={"text": "안녕하세요."})

    assert refused.json()["error"] == "unspeakable_text"
    assert spoken.status_code == 200, spoken.text
