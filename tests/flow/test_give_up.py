"""One truth after the gateway gives up: a cancel to the silent speaker, a resend that names what
it supersedes, and a late play recorded as played_late, never as a silent flip to played."""

from __future__ import annotations

from gateway.broadcasts.models import cancel_command_id
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
from wire.contract import AckStatus, FailReason

__all__ = ["recording"]  # the module-scoped fixture, shared


async def _give_up_on(
    stack: Stack, frozen: list[str], codes: list[str], command: contract.Command
) -> None:
    """Every speaker but `frozen` plays; the sweeper asks the frozen ones until it gives up."""
    for code in codes:
        if code not in frozen:
            _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()
    for _ in range(stack.settings.max_send_attempts + 2):
        stack.clock.advance(600)
        for code in codes:  # frozen, not gone: the broker has not noticed yet
            _presence(stack, code, "heartbeat")
        await stack.deliver()
        await stack.app.state.sweeper.sweep_once()
        await stack.publish_pending()


async def test_giving_up_cancels_and_a_late_play_is_played_late(
    stack: Stack, recording: bytes
) -> None:
    codes = await _everyone_online(stack)
    frozen = codes[:2]
    _, body = await _create(stack, recording, all_villages="true", expires_in_s=7200)
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    await _give_up_on(stack, frozen, codes, command)

    city = stack.settings.city_code
    cancels = [(t, c) for t, c in _commands(stack) if c.type == "cancel"]
    assert sorted(t for t, _ in cancels) == sorted(
        contract.command_topic_speaker(city, c) for c in frozen
    ), "a signed cancel to each speaker given up on, and to no other"
    for topic, cancel in cancels:
        assert cancel.id == cancel_command_id(command.id)
        assert cancel.broadcast_id == command.broadcast_id
        assert cancel.scope == contract.Scope(kind="speaker", ids=(topic.rsplit("/", 1)[-1],))
        assert cancel.sig is not None
    original = await _detail(stack, body["id"])
    states = {s["code"]: (s["state"], s["reason"]) for s in _speakers(original)}
    assert all(states[c] == ("expired", "no_ack") for c in frozen)

    # The officer resends to the missed.
    sent_before = len(stack.bus.published)
    response = await stack.client.post(f"/api/v1/broadcasts/{body['id']}/resend")
    assert response.status_code == 201, response.text
    resent = response.json()
    assert resent["target"]["supersedes"] == [command.id]
    await stack.publish_pending()
    again = {t.rsplit("/", 1)[-1]: c for t, c in _commands(stack)[sent_before:]}
    assert set(again) == set(frozen)
    assert all(c.supersedes == (command.id,) and c.sig is not None for c in again.values())
    original = await _detail(stack, body["id"])
    linked = {s["code"]: s["resent_in"] for s in _speakers(original)}
    assert {c: linked[c] for c in frozen} == dict.fromkeys(frozen, resent["id"])
    assert all(linked[c] is None for c in codes if c not in frozen)
    assert all(s["resend_of"] == body["id"] for s in _speakers(await _detail(stack, resent["id"])))

    # They wake. One had played the original (the cancel came too late for it): it says so, and
    # answers the resend from that playback. The other dropped the original for its cancel.
    late, dropped = frozen
    _ack(stack, command, late, AckStatus.PLAYED)
    _ack(stack, again[late], late, AckStatus.RECEIVED)
    _ack(
        stack,
        again[late],
        late,
        AckStatus.PLAYED,
        already_played_as=command.id,
    )
    _ack(stack, command, dropped, AckStatus.FAILED, reason=FailReason.CANCELLED.value)
    for status in (AckStatus.RECEIVED, AckStatus.PLAYING, AckStatus.PLAYED):
        _ack(stack, again[dropped], dropped, status)
    await stack.deliver()

    original = await _detail(stack, body["id"])
    states = {s["code"]: (s["state"], s["reason"]) for s in _speakers(original)}
    assert states[late] == ("played_late", "no_ack"), "kept why it ended, and that it played"
    assert states[dropped] == ("expired", "no_ack"), "the failed delivery stays failed"
    assert original["speakers"]["played_late"] == 1
    assert original["speakers"]["played"] == len(codes) - 2
    assert original["villages"]["missed"] + original["villages"]["partial"] >= 1
    second = await _detail(stack, resent["id"])
    states = {s["code"]: (s["state"], s["reason"]) for s in _speakers(second)}
    assert states[late] == ("played", f"already_played_as:{command.id}")
    assert states[dropped] == ("played", None)
    assert second["speakers"]["played"] == 2


async def test_a_resend_of_a_resend_supersedes_every_earlier_send(
    stack: Stack, recording: bytes
) -> None:
    codes = await _everyone_online(stack)
    frozen = codes[:1]
    _, body = await _create(stack, recording, all_villages="true", expires_in_s=7200)
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    await _give_up_on(stack, frozen, codes, command)
    first = (await stack.client.post(f"/api/v1/broadcasts/{body['id']}/resend")).json()
    await stack.publish_pending()
    first_command = _commands(stack)[-1][1]
    assert first_command.supersedes == (command.id,)
    await _give_up_on(stack, frozen, codes, first_command)
    response = await stack.client.post(f"/api/v1/broadcasts/{first['id']}/resend")
    assert response.status_code == 201, response.text
    await stack.publish_pending()
    plays = [c for _, c in _commands(stack) if c.type == "play"]
    assert plays[-1].supersedes == (first_command.id, command.id)
