"""A speaker's ``unknown_key`` refusal is not final: the delivery stays open and the sweeper asks
again, signed afresh by the current key, as for a missing ack; a speaker that has learned the key
since plays it."""

from __future__ import annotations

from typing import Any

from gateway.bus import Incoming
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _ack, _commands, recording
from wire import contract
from wire.contract import AckStatus

__all__ = ["recording"]  # the module-scoped fixture, shared


def _send(stack: Stack, speaker: str, message: contract.Presence) -> None:
    topic = contract.presence_topic(stack.settings.city_code, speaker)
    stack.bus.incoming.put_nowait(Incoming(topic, contract.encode_presence(message)))


async def _heartbeats(stack: Stack, codes: list[str], status: str = "heartbeat") -> None:
    for code in codes:
        presence = contract.Presence(speaker=code, status=status, at_ms=contract.now_ms())  # type: ignore[arg-type]
        _send(stack, code, presence)
    await stack.deliver()


async def _speaker_state(stack: Stack, broadcast_id: str, code: str) -> dict[str, Any]:
    detail = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    speakers = {s["code"]: s for v in detail["village_deliveries"] for s in v["speakers"]}
    found: dict[str, Any] = speakers[code]
    return found


async def test_an_unknown_key_refusal_is_asked_again_under_the_current_key(
    stack: Stack, recording: bytes
) -> None:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    codes = [s["code"] for s in fleet]
    await _heartbeats(stack, codes, "online")
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "disaster", "all_villages": "true"},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
    )
    assert response.status_code in (201, 202), response.text
    broadcast_id = response.json()["id"]
    if response.status_code == 202:  # waiting for a second person: approve it
        approval = response.json()["approval_id"]
        approved = await stack.client.post(f"/api/v1/approvals/{approval}/approve")
        assert approved.status_code == 200, approved.text
    await stack.publish_pending()
    [(_, first)] = _commands(stack)
    refusing, *rest = codes
    # The speaker had not learned the key yet: refused as unknown_key. Not an answer that ends it.
    _ack(stack, first, refusing, AckStatus.REJECTED, reason="unknown_key")
    for code in rest:
        _ack(stack, first, code, AckStatus.PLAYED)
    await stack.deliver()
    state = await _speaker_state(stack, broadcast_id, refusing)
    assert (state["state"], state["reason"]) == ("sent", "rejected: unknown_key")

    rotated = await stack.client.post("/api/v1/keys/rotate")
    assert rotated.status_code == 201, rotated.text
    stack.clock.advance(60)  # its ack is due: asked again, like a missing ack
    await _heartbeats(stack, codes)
    await stack.app.state.sweeper.sweep_once()
    stack.clock.advance(stack.settings.retry_backoff_s)  # the ask waits its back-off
    await stack.publish_pending()
    topic, again = _commands(stack)[-1]
    assert topic == contract.command_topic_speaker(stack.settings.city_code, refusing)
    assert again.id == first.id
    assert again.key_id == rotated.json()["key_id"] != first.key_id, "signed afresh, current key"
    _ack(stack, again, refusing, AckStatus.PLAYED)
    await stack.deliver()
    state = await _speaker_state(stack, broadcast_id, refusing)
    assert state["state"] == "played"
    detail = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    assert detail["speakers"]["played"] == len(codes)


async def test_a_speaker_that_never_learns_the_key_ends_with_the_reason(
    stack: Stack, recording: bytes
) -> None:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    codes = [s["code"] for s in fleet]
    await _heartbeats(stack, codes, "online")
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true", "expires_in_s": "3600"},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
    )
    assert response.status_code == 201, response.text
    broadcast_id = response.json()["id"]
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    refusing, *rest = codes
    for code in rest:
        _ack(stack, command, code, AckStatus.PLAYED)
    _ack(stack, command, refusing, AckStatus.REJECTED, reason="unknown_key")
    await stack.deliver()
    for _ in range(stack.settings.max_send_attempts + 2):
        stack.clock.advance(600)
        await _heartbeats(stack, codes)
        await stack.app.state.sweeper.sweep_once()
        before = len(stack.bus.published)
        await stack.publish_pending()
        for _, again in _commands(stack)[before:]:
            if again.type == "play":
                _ack(stack, again, refusing, AckStatus.REJECTED, reason="unknown_key")
        await stack.deliver()
    state = await _speaker_state(stack, broadcast_id, refusing)
    assert (state["state"], state["reason"]) == ("expired", "rejected: unknown_key")
    assert _commands(stack)[-1][1].type == "cancel", "given up like any unanswered delivery"
