"""Recordings are deleted after their retention period, unless a disaster alert (longer), held
as evidence, or still used by a newer broadcast; the broadcast's record stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _create, recording
from tests.media import make_recording

__all__ = ["recording"]


@pytest.fixture(scope="module")
def others(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Two more recordings that sound different, so their audio is stored apart."""
    folder: Path = tmp_path_factory.mktemp("others")
    return [
        make_recording(folder / f"other{seed}.m4a", "m4a", seconds=2.0, seed=seed).read_bytes()
        for seed in (11, 12)
    ]


DAY = 86400


async def _audio_status(stack: Stack, broadcast_id: str) -> int:
    detail = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    assert detail["id"] == broadcast_id, "the record outlives the recording"
    return await _sha_status(stack, broadcast_id)


async def _sha_status(stack: Stack, broadcast_id: str) -> int:
    async with stack.app.state.sessions() as session:
        from gateway.broadcasts.models import Broadcast

        broadcast = await session.get(Broadcast, broadcast_id)
        assert broadcast is not None
        sha = broadcast.audio_sha256["opus"]
    return (await stack.client.get(f"/api/v1/audio/{sha}")).status_code


async def test_recordings_are_purged_after_retention(
    stack: Stack, recording: bytes, others: list[bytes]
) -> None:
    _, plain = await _create(stack, recording, all_villages="true")
    _, alert = await _create(stack, others[0], all_villages="true", category="disaster")
    _, held = await _create(stack, others[1], all_villages="true")
    hold = await stack.client.post(
        f"/api/v1/broadcasts/{held['id']}/hold", json={"reason": "주민 민원 조사 중"}
    )
    assert hold.status_code == 200
    assert hold.json()["evidence_hold"] is True

    stack.clock.advance(stack.settings.recording_retention_days * DAY - 60)
    assert (await stack.app.state.sweeper.purge_once()).broadcasts == 0
    stack.clock.advance(120)
    purge = await stack.app.state.sweeper.purge_once()
    assert purge.broadcasts == 1

    assert await _audio_status(stack, plain["id"]) == 404
    summary = (await stack.client.get(f"/api/v1/broadcasts/{plain['id']}")).json()
    assert summary["audio_purged_at"] is not None
    assert await _audio_status(stack, alert["id"]) == 200, "disaster alerts are kept longer"
    assert await _audio_status(stack, held["id"]) == 200, "held as evidence"

    release = await stack.client.post(f"/api/v1/broadcasts/{held['id']}/hold", json={"hold": False})
    assert release.json()["evidence_hold"] is False
    await stack.app.state.sweeper.purge_once()
    assert await _audio_status(stack, held["id"]) == 404

    stack.clock.advance(stack.settings.disaster_recording_retention_days * DAY)
    await stack.app.state.sweeper.purge_once()
    assert await _audio_status(stack, alert["id"]) == 404


async def test_audio_still_used_by_a_newer_broadcast_is_kept(
    stack: Stack, recording: bytes
) -> None:
    _, old = await _create(stack, recording, all_villages="true")
    stack.clock.advance(60 * DAY)
    _, new = await _create(stack, recording, all_villages="true")
    stack.clock.advance(31 * DAY)
    purge = await stack.app.state.sweeper.purge_once()
    assert purge.broadcasts == 1
    assert purge.recordings == 0
    assert await _sha_status(stack, old["id"]) == 200
    assert await _sha_status(stack, new["id"]) == 200


async def _asset_kept(stack: Stack, sha: str) -> bool:
    from gateway.broadcasts.models import AudioAsset

    async with stack.app.state.sessions() as session:
        return await session.get(AudioAsset, sha) is not None


async def test_audio_that_never_played_is_purged_on_the_same_clock(
    stack: Stack, recording: bytes, others: list[bytes]
) -> None:
    """A cancelled schedule's and a lapsed or rejected approval request's recordings were kept
    for ever: nothing that played pointed at them, so the broadcasts' purge never saw them."""
    from gateway.approvals.models import ApprovalRequest
    from gateway.auth import Role
    from gateway.schedules.models import Schedule
    from tests.support.people import make_person

    made = await stack.client.post(
        "/api/v1/schedules",
        data={"category": "administrative", "all_villages": "true", "send_at": "2026-01-02T10:00"},
        files={"file": ("later.m4a", others[0], "audio/mp4")},
    )
    assert made.status_code == 201, made.text
    paused_or_active = await stack.client.post(
        "/api/v1/schedules",
        data={"category": "administrative", "all_villages": "true", "send_at": "2026-06-01T10:00"},
        files={"file": ("much-later.m4a", recording, "audio/mp4")},
    )
    assert paused_or_active.status_code == 201, paused_or_active.text
    cancelled = await stack.client.post(f"/api/v1/schedules/{made.json()['id']}/cancel")
    assert cancelled.status_code == 200
    safety = await make_person(stack.client, Role.SAFETY_OFFICER)
    asked = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "disaster", "all_villages": "true"},
        files={"file": ("alert.m4a", others[1], "audio/mp4")},
        headers=safety.headers,
    )
    assert asked.status_code == 202, asked.text
    async with stack.app.state.sessions() as session:
        schedule = await session.get(Schedule, made.json()["id"])
        waiting = await session.get(Schedule, paused_or_active.json()["id"])
        approval = await session.get(ApprovalRequest, asked.json()["id"])
        assert schedule is not None
        assert waiting is not None
        assert approval is not None
        unplayed = set(schedule.audio_sha256.values())
        kept = set(waiting.audio_sha256.values())
        alert = set(approval.audio_sha256.values())

    stack.clock.advance(stack.settings.recording_retention_days * DAY - 60)
    await stack.app.state.sweeper.purge_once()
    assert all([await _asset_kept(stack, sha) for sha in unplayed | kept | alert])
    stack.clock.advance(120)
    purge = await stack.app.state.sweeper.purge_once()
    assert purge.unused == len(unplayed)
    assert not any([await _asset_kept(stack, sha) for sha in unplayed])
    assert all([await _asset_kept(stack, sha) for sha in kept]), "a schedule still to fire"
    assert all([await _asset_kept(stack, sha) for sha in alert]), "a disaster's clock is longer"
    stack.clock.advance(stack.settings.disaster_recording_retention_days * DAY)
    await stack.app.state.sweeper.purge_once()
    assert not any([await _asset_kept(stack, sha) for sha in alert]), "the request lapsed unsent"
    assert all([await _asset_kept(stack, sha) for sha in kept]), "still to fire"
