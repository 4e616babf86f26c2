"""Resend to the speakers that missed a broadcast: a new broadcast, to them only, same audio."""

from __future__ import annotations

from typing import Any

from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import (
    _ack,
    _commands,
    _create,
    _detail,
    _everyone_online,
    _presence,
    _speakers,
    recording,
)
from wire import contract
from wire.contract import AckStatus

__all__ = ["recording"]  # the module-scoped fixture, shared


async def _missed_broadcast(stack: Stack, recording: bytes) -> tuple[dict[str, Any], list[str]]:
    """A broadcast to every speaker in which two expired offline and one failed."""
    codes = await _everyone_online(stack)
    away = codes[:2]
    for code in away:
        _presence(stack, code, "offline")
    await stack.deliver()
    _, body = await _create(stack, recording, all_villages="true", expires_in_s=120)
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    broken = codes[2]
    _ack(stack, command, broken, AckStatus.RECEIVED)
    _ack(stack, command, broken, AckStatus.FAILED, reason="player_error")
    for code in codes[3:]:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()
    stack.clock.advance(130)
    await stack.app.state.sweeper.sweep_once()
    detail = await _detail(stack, body["id"])
    states = {s["code"]: s["state"] for s in _speakers(detail)}
    assert [states[c] for c in away] == ["expired", "expired"]
    assert states[broken] == "failed"
    return detail, [*away, broken]


async def test_resend_reaches_only_the_missed(stack: Stack, recording: bytes) -> None:
    original, missed = await _missed_broadcast(stack, recording)
    for code in missed[:2]:
        _presence(stack, code, "online")
    await stack.deliver()
    sent_before = len(stack.bus.published)

    response = await stack.client.post(f"/api/v1/broadcasts/{original['id']}/resend")
    assert response.status_code == 201, response.text
    resent = response.json()
    assert resent["id"] != original["id"]
    assert resent["target"]["resend_of"] == original["id"]
    assert resent["speakers"]["total"] == len(missed)
    assert resent["category"] == original["category"]

    await stack.publish_pending()
    published = _commands(stack)[sent_before:]
    assert sorted(t for t, _ in published) == sorted(
        contract.command_topic_speaker(stack.settings.city_code, c) for c in missed
    )
    ids = {c.id for _, c in published}
    assert len(ids) == 1, "one new command id, played at most once by each speaker"
    [(_, first)] = [p for p in _commands(stack)[:sent_before] if p[1].type == "play"][:1]
    assert first.id not in ids, "the original id was already used by these speakers"
    for topic, command in published:
        code = topic.rsplit("/", 1)[-1]
        assert command.scope == contract.Scope(kind="speaker", ids=(code,))
        assert command.audio[0].sha256 == first.audio[0].sha256
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()

    detail = await _detail(stack, resent["id"])
    assert detail["state"] == "completed"
    assert detail["speakers"]["played"] == len(missed)
    # The original keeps its own record.
    assert (await _detail(stack, original["id"]))["speakers"]["played"] == len(
        _speakers(original)
    ) - len(missed)


async def test_resend_can_be_narrowed(stack: Stack, recording: bytes) -> None:
    original, missed = await _missed_broadcast(stack, recording)
    only_failed = await stack.client.post(
        f"/api/v1/broadcasts/{original['id']}/resend", json={"states": ["failed"]}
    )
    assert only_failed.status_code == 201, only_failed.text
    assert only_failed.json()["speakers"]["total"] == 1

    by_id = {s["code"]: s["speaker_id"] for s in _speakers(original)}
    one = await stack.client.post(
        f"/api/v1/broadcasts/{original['id']}/resend",
        json={"speaker_ids": [by_id[missed[0]]], "expires_in_s": 600},
    )
    assert one.status_code == 201, one.text
    assert one.json()["speakers"]["total"] == 1


async def test_resend_is_idempotent_with_a_key(stack: Stack, recording: bytes) -> None:
    original, _ = await _missed_broadcast(stack, recording)
    url = f"/api/v1/broadcasts/{original['id']}/resend"
    first = await stack.client.post(url, headers={"Idempotency-Key": "resend-1"})
    again = await stack.client.post(url, headers={"Idempotency-Key": "resend-1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await stack.client.post(
        url, json={"states": ["failed"]}, headers={"Idempotency-Key": "resend-1"}
    )
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"


async def test_nothing_to_resend_and_cancelled_are_conflicts(
    stack: Stack, recording: bytes
) -> None:
    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true")
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    for code in codes:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()
    response = await stack.client.post(f"/api/v1/broadcasts/{body['id']}/resend")
    assert response.status_code == 409
    assert response.json()["error"] == "nothing_to_resend"

    _, other = await _create(stack, recording, all_villages="true")
    assert (await stack.client.post(f"/api/v1/broadcasts/{other['id']}/cancel")).status_code == 200
    response = await stack.client.post(f"/api/v1/broadcasts/{other['id']}/resend")
    assert response.status_code == 409
    assert response.json()["error"] == "broadcast_cancelled"


async def test_bad_resend_requests(stack: Stack) -> None:
    missing = await stack.client.post(f"/api/v1/broadcasts/{'0' * 32}/resend")
    assert missing.status_code == 404
    assert missing.json()["error"] == "broadcast_not_found"
    bad = await stack.client.post(
        f"/api/v1/broadcasts/{'0' * 32}/resend", json={"states": ["played"]}
    )
    assert bad.status_code == 422
