"""Pre-emption as the gateway records it: ``preempted`` acks, their deadline, the counts."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.bus import Incoming
from gateway.clock import to_ms
from tests.flow.conftest import Stack, proof_of
from tests.media import make_recording
from wire import contract
from wire.contract import AckStatus


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "notice.m4a", "m4a", seconds=2.0)
    return path.read_bytes()


async def _create(stack: Stack, recording: bytes, **form: Any) -> dict[str, Any]:
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data=form,
        files={"file": ("notice.m4a", recording, "audio/mp4")},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _detail(stack: Stack, broadcast_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _states(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["code"]: s for v in detail["village_deliveries"] for s in v["speakers"]}


class Speakers:
    """Acks and presence as the speakers would send them, with times the test chooses."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        # Acks carry the speaker's clock, never later than the gateway's: count up from before.
        self.at_ms = to_ms(stack.clock.now()) - 60_000

    def ack(self, command: contract.Command, speaker: str, status: AckStatus, **extra: Any) -> None:
        self.at_ms += 100
        self.send(command, speaker, status, self.at_ms, **extra)

    def send(
        self,
        command: contract.Command,
        speaker: str,
        status: AckStatus,
        at_ms: int,
        **extra: Any,
    ) -> None:
        if status is AckStatus.PLAYED:
            extra = {**proof_of(command), **extra}
        ack = contract.Ack(
            command_id=command.id,
            broadcast_id=command.broadcast_id,
            speaker=speaker,
            status=status,
            at_ms=at_ms,
            **extra,
        )
        topic = contract.ack_topic(self.stack.settings.city_code, speaker)
        self.stack.bus.incoming.put_nowait(Incoming(topic, contract.encode_ack(ack)))

    def presence(self, speaker: str, status: str) -> None:
        message = contract.Presence(speaker=speaker, status=status, at_ms=contract.now_ms())  # type: ignore[arg-type]
        topic = contract.presence_topic(self.stack.settings.city_code, speaker)
        self.stack.bus.incoming.put_nowait(Incoming(topic, contract.encode_presence(message)))


async def _village_with_two_speakers(stack: Stack, speakers: Speakers) -> tuple[int, list[str]]:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    for s in fleet:
        speakers.presence(s["code"], "online")
    await stack.deliver()
    by_village: dict[int, list[str]] = {}
    for s in fleet:
        by_village.setdefault(s["village_id"], []).append(s["code"])
    village_id, codes = next((v, c) for v, c in sorted(by_village.items()) if len(c) == 2)
    return village_id, codes


async def _published(stack: Stack) -> dict[str, contract.Command]:
    await stack.publish_pending()
    commands = [contract.decode_command(p) for _, p, _, _ in stack.bus.published]
    return {c.broadcast_id: c for c in commands}


async def test_preempted_then_played_is_recorded_and_counted(
    stack: Stack, recording: bytes
) -> None:
    speakers = Speakers(stack)
    village_id, codes = await _village_with_two_speakers(stack, speakers)
    admin = await _create(stack, recording, category="administrative", village_ids=[village_id])
    disaster = await _create(stack, recording, category="disaster", village_ids=[village_id])
    commands = await _published(stack)
    slow, urgent = commands[admin["id"]], commands[disaster["id"]]
    assert urgent.priority > slow.priority

    for code in codes:
        speakers.ack(slow, code, AckStatus.RECEIVED)
        speakers.ack(slow, code, AckStatus.PLAYING)
        speakers.ack(urgent, code, AckStatus.RECEIVED)
        speakers.ack(slow, code, AckStatus.PREEMPTED)
        speakers.ack(urgent, code, AckStatus.PLAYING)
    await stack.deliver()

    detail = await _detail(stack, admin["id"])
    assert {s["state"] for s in _states(detail).values()} == {"preempted"}
    assert detail["speakers"]["preempted"] == len(codes)
    assert detail["state"] == "in_progress", "a preempted delivery is still open"
    assert detail["villages"]["in_progress"] == 1
    assert [v["outcome"] for v in detail["village_deliveries"]] == ["in_progress"]
    assert (await _detail(stack, disaster["id"]))["speakers"]["playing"] == len(codes)

    for code in codes:
        speakers.ack(urgent, code, AckStatus.PLAYED, audio_sha256=urgent.audio[0].sha256)
        speakers.ack(slow, code, AckStatus.PLAYING)  # from the start
        speakers.ack(slow, code, AckStatus.PLAYED, audio_sha256=slow.audio[0].sha256)
    await stack.deliver()

    first, second = await _detail(stack, disaster["id"]), await _detail(stack, admin["id"])
    for detail in (first, second):
        assert detail["state"] == "completed"
        assert detail["speakers"]["played"] == len(codes)
        assert detail["speakers"]["preempted"] == 0
        assert detail["villages"]["played"] == 1
    for code in codes:
        assert _states(first)[code]["played_at"] < _states(second)[code]["played_at"]


async def test_a_preempted_delivery_is_not_timed_out_before_its_broadcast_expires(
    stack: Stack, recording: bytes
) -> None:
    speakers = Speakers(stack)
    village_id, codes = await _village_with_two_speakers(stack, speakers)
    admin = await _create(
        stack, recording, category="administrative", village_ids=[village_id], expires_in_s=900
    )
    slow = (await _published(stack))[admin["id"]]
    for code in codes:
        for status in (AckStatus.RECEIVED, AckStatus.PLAYING, AckStatus.PREEMPTED):
            speakers.ack(slow, code, status)
    await stack.deliver()

    # Far past every ack timeout and retry, still before the broadcast expires: the higher
    # priority may be a long alert, and the speaker is not asked again meanwhile.
    published = len(stack.bus.published)
    for _ in range(8):
        stack.clock.advance(100)
        for code in codes:
            speakers.presence(code, "heartbeat")
        await stack.deliver()
        await stack.app.state.sweeper.sweep_once()
        await stack.publish_pending()
    assert len(stack.bus.published) == published
    detail = await _detail(stack, admin["id"])
    assert {s["state"] for s in _states(detail).values()} == {"preempted"}

    stack.clock.advance(200)
    for code in codes:
        speakers.presence(code, "heartbeat")
    await stack.deliver()
    await stack.app.state.sweeper.sweep_once()
    detail = await _detail(stack, admin["id"])
    assert {(s["state"], s["reason"]) for s in _states(detail).values()} == {("expired", "expired")}
    assert detail["state"] == "completed"
    assert detail["speakers"]["expired"] == len(codes)
    assert detail["villages"]["missed"] == 1

    # The speaker's own "played" after the delivery ended is kept, as played late: the reason
    # it had ended stays.
    speakers.ack(slow, codes[0], AckStatus.PLAYED, audio_sha256=slow.audio[0].sha256)
    await stack.deliver()
    late = _states(await _detail(stack, admin["id"]))[codes[0]]
    assert (late["state"], late["reason"]) == ("played_late", "expired")


async def test_a_late_copy_of_a_preemption_does_not_undo_the_replay(
    stack: Stack, recording: bytes
) -> None:
    speakers = Speakers(stack)
    village_id, codes = await _village_with_two_speakers(stack, speakers)
    admin = await _create(stack, recording, category="administrative", village_ids=[village_id])
    slow = (await _published(stack))[admin["id"]]
    code = codes[0]
    speakers.ack(slow, code, AckStatus.RECEIVED)
    speakers.ack(slow, code, AckStatus.PLAYING)
    speakers.ack(slow, code, AckStatus.PREEMPTED)
    preempted_at = speakers.at_ms
    speakers.ack(slow, code, AckStatus.PLAYING)
    await stack.deliver()
    assert _states(await _detail(stack, admin["id"]))[code]["state"] == "playing"

    speakers.send(slow, code, AckStatus.PREEMPTED, preempted_at)  # a QoS 1 duplicate
    await stack.deliver()
    assert _states(await _detail(stack, admin["id"]))[code]["state"] == "playing"
    assert stack.app.state.intake.counts["acks_unchanged"] >= 1

    later = speakers.at_ms + 100  # a second pre-emption, after the replay started
    speakers.send(slow, code, AckStatus.PREEMPTED, later)
    await stack.deliver()
    assert _states(await _detail(stack, admin["id"]))[code]["state"] == "preempted"
