"""The residents' notices API: every real notice addressed to a village, played by its speakers
or not (and said so), never a test, an exercise or one cancelled before it was sent."""

from __future__ import annotations

from typing import Any

import httpx

from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import (
    _ack,
    _commands,
    _create,
    _everyone_online,
    recording,
)
from wire.contract import AckStatus

__all__ = ["recording"]  # the module-scoped fixture, shared


def _public(stack: Stack) -> httpx.AsyncClient:
    """The same app with no credentials at all, as a resident's phone calls it."""
    return httpx.AsyncClient(transport=stack.client._transport, base_url="http://gateway")


async def _village(stack: Stack, code: str) -> dict[str, Any]:
    found = await stack.client.get("/api/v1/villages", params={"q": code})
    items: list[dict[str, Any]] = found.json()["items"]
    [village] = [v for v in items if v["code"] == code]
    return village


async def _sent(stack: Stack, recording: bytes, village_id: int, **form: Any) -> dict[str, Any]:
    before = len(_commands(stack))
    stack.clock.advance(1)  # newest first: one after the other
    status, body = await _create(stack, recording, village_ids=[village_id], **form)
    assert status == 201, body
    await stack.publish_pending()
    assert len(_commands(stack)) > before
    return body


async def _played(stack: Stack, broadcast_id: str, speakers: list[str]) -> None:
    [command] = [c for _, c in _commands(stack) if c.broadcast_id == broadcast_id]
    for code in speakers:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()


async def test_a_played_notice_is_public_with_its_audio(stack: Stack, recording: bytes) -> None:
    await _everyone_online(stack)
    village = await _village(stack, "d01-v001")
    other = await _village(stack, "d01-v002")
    body = await _sent(stack, recording, village["id"], title="예방 접종", text="오후 2시 마을회관")
    await _played(stack, body["id"], ["d01-v001-s1"])

    async with _public(stack) as public:
        response = await public.get(f"/api/v1/notices/villages/{village['id']}")
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["village"] == {
            "id": village["id"],
            "name": village["name"],
            "district_name": village["district_name"],
        }
        [notice] = page["items"]
        assert set(notice) == {
            "id",
            "category",
            "title",
            "text",
            "language",
            "sent_at",
            "played_at",
            "played",
            "cancelled",
            "duration_ms",
            "audio_url",
            "all_clear_of",
            "all_cleared_at",
        }, "no sender, no speaker, no target"
        assert (notice["played"], notice["cancelled"], notice["language"]) == (True, False, "ko")
        assert notice["id"] == body["id"]
        assert (notice["title"], notice["text"]) == ("예방 접종", "오후 2시 마을회관")
        assert notice["category"] == "administrative"
        audio = await public.get(notice["audio_url"])
        assert audio.status_code == 200
        assert audio.headers["content-type"].startswith("audio/")

        elsewhere = await public.get(f"/api/v1/notices/villages/{other['id']}")
        assert elsewhere.json()["items"] == [], "only the villages it was addressed to"
        # In the resident's language where the notice has it; Korean otherwise.
        asked = await public.get(f"/api/v1/notices/villages/{village['id']}", params={"lang": "vi"})
        assert asked.status_code == 200, asked.text
        [shown] = asked.json()["items"]
        assert (shown["text"], shown["language"]) == ("오후 2시 마을회관", "ko")
        refused = await public.get(
            f"/api/v1/notices/villages/{village['id']}", params={"lang": "<b>"}
        )
        assert refused.status_code == 422


async def test_unplayed_notices_are_shown_and_said_so_rehearsals_never(
    stack: Stack, recording: bytes
) -> None:
    await _everyone_online(stack)
    village = await _village(stack, "d01-v001")
    unplayed = await _sent(stack, recording, village["id"], title="아직")
    [command] = [c for _, c in _commands(stack) if c.broadcast_id == unplayed["id"]]
    _ack(stack, command, "d01-v001-s1", AckStatus.RECEIVED)
    await stack.deliver()

    cancelled = await _sent(stack, recording, village["id"], title="취소")
    await _played(stack, cancelled["id"], ["d01-v001-s1"])
    response = await stack.client.post(f"/api/v1/broadcasts/{cancelled['id']}/cancel")
    assert response.status_code == 200, response.text

    for mode, title in (("test", "시험"), ("exercise", "훈련")):
        rehearsal = await _sent(stack, recording, village["id"], title=title, mode=mode)
        assert rehearsal["mode"] == mode
        await _played(stack, rehearsal["id"], ["d01-v001-s1", "d01-v001-s2"])

    live = await _sent(stack, recording, village["id"], title="진짜")
    await _played(stack, live["id"], ["d01-v001-s2"])

    # Cancelled before anything was sent: no one was ever told.
    status, never = await _create(stack, recording, village_ids=[village["id"]], title="보류")
    assert status == 201, never
    response = await stack.client.post(f"/api/v1/broadcasts/{never['id']}/cancel")
    assert response.status_code == 200, response.text
    await stack.publish_pending()

    async with _public(stack) as public:
        page = (await public.get(f"/api/v1/notices/villages/{village['id']}")).json()
    shown = [(n["title"], n["played"], n["cancelled"]) for n in page["items"]]
    assert shown == [("진짜", True, False), ("취소", True, True), ("아직", False, False)]
    assert page["items"][-1]["played_at"] is None


async def test_an_unknown_village_is_a_typed_404(stack: Stack) -> None:
    async with _public(stack) as public:
        response = await public.get("/api/v1/notices/villages/999999")
    assert response.status_code == 404
    assert response.json()["error"] == "village_not_found"


async def test_residents_find_their_village_by_name_without_a_login(stack: Stack) -> None:
    village = await _village(stack, "d02-v001")
    async with _public(stack) as public:
        response = await public.get("/api/v1/notices/villages", params={"q": village["name"]})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    expected = {k: village[k] for k in ("id", "name", "district_name")}
    assert expected in items
    assert all(set(item) == {"id", "name", "district_name"} for item in items)


async def test_a_resend_to_the_missed_is_the_same_notice_shown_once(
    stack: Stack, recording: bytes
) -> None:
    await _everyone_online(stack)
    village = await _village(stack, "d01-v001")
    original = await _sent(stack, recording, village["id"], title="단수 안내")
    [command] = [c for _, c in _commands(stack) if c.broadcast_id == original["id"]]
    _ack(stack, command, "d01-v001-s1", AckStatus.PLAYED)
    _ack(stack, command, "d01-v001-s2", AckStatus.RECEIVED)
    _ack(stack, command, "d01-v001-s2", AckStatus.FAILED, reason="player_error")
    await stack.deliver()
    response = await stack.client.post(f"/api/v1/broadcasts/{original['id']}/resend")
    assert response.status_code == 201, response.text
    resent = response.json()
    await stack.publish_pending()
    await _played(stack, resent["id"], ["d01-v001-s2"])

    async with _public(stack) as public:
        page = (await public.get(f"/api/v1/notices/villages/{village['id']}")).json()
    assert [n["id"] for n in page["items"]] == [original["id"]]
