"""Who may fetch audio: speakers through the signed links their commands carry (until the
command expires), residents through their notices' links, people who may see what uses it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from gateway.auth import Role
from gateway.schedules.models import Schedule
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _commands, _create, _everyone_online, recording
from tests.flow.test_roles import _layout
from tests.media import make_recording
from tests.support.people import make_person

__all__ = ["recording"]

ANONYMOUS = {"Authorization": ""}


async def test_speakers_fetch_audio_through_signed_links_that_expire_with_the_command(
    stack: Stack, recording: bytes
) -> None:
    stack.settings.inline_audio_max_bytes = 1  # every encoding travels behind a link
    await _everyone_online(stack)
    status, _body = await _create(stack, recording, all_villages="true")
    assert status == 201
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    ref, other = command.audio[0], command.audio[1]
    assert ref.url is not None
    parts = urlsplit(ref.url)
    query = parse_qs(parts.query)
    assert int(query["expires"][0]) == command.expires_at_ms // 1000, "the command's expiry"
    link = f"{parts.path}?{parts.query}"

    whole = await stack.client.get(link, headers=ANONYMOUS)
    assert whole.status_code == 200, whole.text
    assert hashlib.sha256(whole.content).hexdigest() == ref.sha256
    part = await stack.client.get(link, headers={**ANONYMOUS, "Range": "bytes=10-"})
    assert part.status_code == 206
    assert part.content == whole.content[10:]
    head = await stack.client.head(link, headers=ANONYMOUS)
    assert head.headers["content-length"] == str(ref.size)

    def refused(response: object, code: str) -> None:
        assert response.status_code == 403, response.text  # type: ignore[attr-defined]
        assert response.json()["error"] == code  # type: ignore[attr-defined]

    refused(await stack.client.get(parts.path, headers=ANONYMOUS), "audio_link_required")
    sig = query["sig"][0]
    forged = f"{parts.path}?expires={query['expires'][0]}&sig={'A' * len(sig)}"
    refused(await stack.client.get(forged, headers=ANONYMOUS), "audio_link_invalid")
    elsewhere = f"/api/v1/audio/{other.sha256}?{parts.query}"
    refused(await stack.client.get(elsewhere, headers=ANONYMOUS), "audio_link_invalid")
    longer = f"{parts.path}?expires={int(query['expires'][0]) + 86400}&sig={sig}"
    refused(await stack.client.get(longer, headers=ANONYMOUS), "audio_link_invalid")
    stack.clock.advance(command.expires_at_ms / 1000 - stack.clock.now().timestamp() + 1)
    refused(await stack.client.get(link, headers=ANONYMOUS), "audio_link_expired")


async def test_people_hear_only_the_audio_of_what_they_may_see(
    stack: Stack, recording: bytes, tmp_path: Path
) -> None:
    districts, villages = await _layout(stack)
    mine, other = districts[0]["id"], districts[1]["id"]
    here = next(v["id"] for v in villages if v["district_id"] == mine)
    there = next(v["id"] for v in villages if v["district_id"] == other)
    head = await make_person(stack.client, Role.VILLAGE_HEAD, village_ids=[here])
    stranger = await make_person(stack.client, Role.VILLAGE_HEAD, village_ids=[there])
    officer = await make_person(stack.client, Role.DISTRICT_OFFICER, district_ids=[mine])
    await _everyone_online(stack)
    status, _body = await _create(stack, recording, village_ids=[here])
    assert status == 201
    await stack.publish_pending()
    [(_, command), *_rest] = _commands(stack)
    url = f"/api/v1/audio/{command.audio[0].sha256}"

    for person in (head, officer):
        heard = await stack.client.get(url, headers=person.headers)
        assert heard.status_code == 200, heard.text
        assert heard.headers["cache-control"].startswith("private")
    hidden = await stack.client.get(url, headers=stranger.headers)
    assert (hidden.status_code, hidden.json()["error"]) == (404, "audio_not_found")
    forged = await stack.client.get(url, headers={"Authorization": "Bearer nonsense"})
    assert forged.status_code == 401

    # A schedule's recording: heard by whoever sees the schedule, nobody else.
    later = make_recording(tmp_path / "later.m4a", "m4a", seconds=1.0).read_bytes()
    made = await stack.client.post(
        "/api/v1/schedules",
        data={
            "category": "administrative",
            "district_ids": str(other),
            "send_at": "2026-01-02T10:00",
        },
        files={"file": ("later.m4a", later, "audio/mp4")},
    )
    assert made.status_code == 201, made.text
    async with stack.app.state.sessions() as session:
        schedule = await session.get(Schedule, made.json()["id"])
        assert schedule is not None
        scheduled = f"/api/v1/audio/{schedule.audio_sha256['opus']}"
    there_officer = await make_person(stack.client, Role.DISTRICT_OFFICER, district_ids=[other])
    assert (await stack.client.get(scheduled, headers=there_officer.headers)).status_code == 200
    assert (await stack.client.get(scheduled, headers=officer.headers)).status_code == 404
