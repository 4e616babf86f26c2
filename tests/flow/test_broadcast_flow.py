"""A broadcast from upload to every speaker's ack: through the outbox, intake and sweeper."""

from __future__ import annotations

import base64
import json
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


async def _create(
    stack: Stack, recording: bytes, *, key: str | None = None, **form: Any
) -> tuple[int, dict[str, Any]]:
    data: dict[str, Any] = {"category": "administrative", **form}
    headers = {"Idempotency-Key": key} if key else {}
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data=data,
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers=headers,
    )
    return response.status_code, response.json()


async def _detail(stack: Stack, broadcast_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _speakers(detail: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for v in detail["village_deliveries"] for s in v["speakers"]]


def _commands(stack: Stack) -> list[tuple[str, contract.Command]]:
    return [
        (topic, contract.decode_command(payload)) for topic, payload, _, _ in stack.bus.published
    ]


def _ack(
    stack: Stack, command: contract.Command, speaker: str, status: AckStatus, **extra: Any
) -> None:
    if status is AckStatus.PLAYED:
        extra = {**proof_of(command), **extra}
    ack = contract.Ack(
        command_id=command.id,
        broadcast_id=command.broadcast_id,
        speaker=speaker,
        status=status,
        at_ms=contract.now_ms(),
        **extra,
    )
    topic = contract.ack_topic(stack.settings.city_code, speaker)
    stack.bus.incoming.put_nowait(Incoming(topic, contract.encode_ack(ack)))


def _presence(stack: Stack, speaker: str, status: str) -> None:
    message = contract.Presence(speaker=speaker, status=status, at_ms=contract.now_ms())  # type: ignore[arg-type]
    topic = contract.presence_topic(stack.settings.city_code, speaker)
    stack.bus.incoming.put_nowait(Incoming(topic, contract.encode_presence(message)))


async def _everyone_online(stack: Stack) -> list[str]:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    codes = [s["code"] for s in fleet]
    for code in codes:
        _presence(stack, code, "online")
    await stack.deliver()
    return codes


async def test_broadcast_to_all_reaches_every_speaker(stack: Stack, recording: bytes) -> None:
    codes = await _everyone_online(stack)
    status, body = await _create(stack, recording, all_villages="true", title="마을 회관 청소")
    assert status == 201, body
    assert body["state"] == "queued"
    assert body["speakers"]["total"] == len(codes)
    assert body["speakers"]["queued"] == len(codes)
    assert not stack.bus.published, "nothing may be published inside the request"

    assert await stack.publish_pending() == 1
    [(topic, command)] = _commands(stack)
    assert topic == contract.command_topic_all(stack.settings.city_code)
    assert command.scope.kind == "all"
    assert command.broadcast_id == body["id"]
    assert command.audio[0].codec == "opus"
    assert len(command.audio[0].inline_bytes()) == command.audio[0].size

    detail = await _detail(stack, body["id"])
    assert {s["state"] for s in _speakers(detail)} == {"sent"}, "PUBACK means sent, never received"

    for code in codes:
        for step in (AckStatus.RECEIVED, AckStatus.PLAYING, AckStatus.PLAYED):
            _ack(stack, command, code, step)
    await stack.deliver()
    detail = await _detail(stack, body["id"])
    assert detail["state"] == "completed"
    assert detail["speakers"]["played"] == len(codes)
    assert detail["villages"]["played"] == detail["villages"]["total"] == 5


async def test_duplicate_and_out_of_order_acks_are_harmless(stack: Stack, recording: bytes) -> None:
    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true")
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    first, *rest = codes
    _ack(stack, command, first, AckStatus.PLAYED)
    _ack(stack, command, first, AckStatus.RECEIVED)
    _ack(stack, command, first, AckStatus.PLAYED)
    _ack(stack, command, first, AckStatus.PLAYING)
    await stack.deliver()
    detail = await _detail(stack, body["id"])
    states = {s["code"]: s["state"] for s in _speakers(detail)}
    assert states[first] == "played"
    assert all(states[c] == "sent" for c in rest)


async def test_forged_and_malformed_acks_change_nothing(stack: Stack, recording: bytes) -> None:
    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true")
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    victim, attacker = codes[0], codes[1]
    forged = contract.Ack(
        command_id=command.id,
        broadcast_id=command.broadcast_id,
        speaker=victim,
        status=AckStatus.FAILED,
        at_ms=contract.now_ms(),
    )
    city = stack.settings.city_code
    stack.bus.incoming.put_nowait(
        Incoming(contract.ack_topic(city, attacker), contract.encode_ack(forged))
    )
    for garbage in (b"", b"\x00\xff", b"{}", b'{"status": "played"}', b"[" * 5000):
        stack.bus.incoming.put_nowait(Incoming(contract.ack_topic(city, attacker), garbage))
    stack.bus.incoming.put_nowait(Incoming("maeul/v1/testcity/ack", b"{}"))
    wrong_command = forged.model_copy(update={"speaker": attacker, "command_id": "0" * 32})
    stack.bus.incoming.put_nowait(
        Incoming(contract.ack_topic(city, attacker), contract.encode_ack(wrong_command))
    )
    await stack.deliver()
    counts = stack.app.state.intake.counts
    assert counts["forged"] == 1
    assert counts["malformed"] >= 6
    assert counts["acks_unknown"] == 1
    detail = await _detail(stack, body["id"])
    assert {s["state"] for s in _speakers(detail)} == {"sent"}
    assert (await stack.client.get("/healthz")).status_code == 200


async def test_unacknowledged_deliveries_are_retried_then_expire(
    stack: Stack, recording: bytes
) -> None:
    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true", expires_in_s=3600)
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    silent = codes[0]
    for code in codes[1:]:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()

    sweeper = stack.app.state.sweeper
    retried_topics = []
    for _ in range(stack.settings.max_send_attempts + 2):
        stack.clock.advance(600)
        for code in codes:  # keep everyone's heartbeat fresh
            _presence(stack, code, "heartbeat")
        await stack.deliver()
        await sweeper.sweep_once()
        before = len(stack.bus.published)
        await stack.publish_pending()
        retried_topics += [t for t, *_ in stack.bus.published[before:]]
    # Asked again on its own topic until the retries run out, then told to drop it (a cancel).
    assert retried_topics == [contract.command_topic_speaker(stack.settings.city_code, silent)] * (
        stack.settings.max_send_attempts
    )
    assert contract.decode_command(stack.bus.published[-1][1]).type == "cancel"
    detail = await _detail(stack, body["id"])
    state = {s["code"]: s for s in _speakers(detail)}[silent]
    assert state["state"] == "expired"
    assert state["reason"] == "no_ack"
    assert detail["state"] == "completed"
    assert detail["villages"]["played"] + detail["villages"]["partial"] == 5


async def test_offline_speakers_catch_up_and_expire_only_after_expiry(
    stack: Stack, recording: bytes
) -> None:
    codes = await _everyone_online(stack)
    away, late = codes[0], codes[1]
    _presence(stack, away, "offline")
    _presence(stack, late, "offline")
    await stack.deliver()
    _, body = await _create(stack, recording, all_villages="true", expires_in_s=120)
    assert body["speakers"]["offline"] == 2
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    for code in codes[2:]:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()

    stack.clock.advance(30)
    await stack.app.state.sweeper.sweep_once()
    _presence(stack, late, "online")
    await stack.deliver()
    await stack.publish_pending()
    topic, catch_up = _commands(stack)[-1]
    assert topic == contract.command_topic_speaker(stack.settings.city_code, late)
    assert catch_up.id == command.id, "a catch-up is the same command: played at most once"
    _ack(stack, catch_up, late, AckStatus.PLAYED)
    await stack.deliver()

    stack.clock.advance(120)
    await stack.app.state.sweeper.sweep_once()
    detail = await _detail(stack, body["id"])
    states = {s["code"]: s for s in _speakers(detail)}
    assert states[late]["state"] == "played"
    assert states[away]["state"] == "expired"
    assert states[away]["reason"] == "offline"
    assert detail["state"] == "completed"
    assert detail["speakers"]["played"] == len(codes) - 1
    assert detail["speakers"]["expired"] == 1


async def test_districts_and_villages_use_group_topics(stack: Stack, recording: bytes) -> None:
    districts = (await stack.client.get("/api/v1/districts")).json()["items"]
    villages = (await stack.client.get("/api/v1/villages", params={"limit": 100})).json()["items"]
    whole = districts[0]
    single = next(v for v in villages if v["district_id"] != whole["id"])
    status, body = await _create(
        stack, recording, district_ids=[whole["id"]], village_ids=[single["id"]]
    )
    assert status == 201, body
    await stack.publish_pending()
    topics = sorted(t for t, _ in _commands(stack))
    city = stack.settings.city_code
    assert topics == sorted(
        [
            contract.command_topic_district(city, whole["code"]),
            contract.command_topic_village(city, single["code"]),
        ]
    )
    in_district = sum(1 for v in villages if v["district_id"] == whole["id"])
    assert body["villages"]["total"] == in_district + 1


async def test_idempotency_key(stack: Stack, recording: bytes) -> None:
    first_status, first = await _create(stack, recording, key="k-1", all_villages="true")
    again_status, again = await _create(stack, recording, key="k-1", all_villages="true")
    assert (first_status, again_status) == (201, 200)
    assert again["id"] == first["id"]
    status, body = await _create(
        stack, recording, key="k-1", all_villages="true", title="다른 제목"
    )
    assert status == 422
    assert body["error"] == "idempotency_key_reused"
    listing = (await stack.client.get("/api/v1/broadcasts")).json()
    assert listing["total"] == 1


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"village_ids": [999999]}, 404, "village_not_found"),
        ({"district_ids": [999999]}, 404, "district_not_found"),
        ({}, 422, "empty_target"),
        ({"all_villages": "true", "category": "party"}, 422, "unknown_category"),
    ],
)
async def test_bad_requests_get_stable_codes(
    stack: Stack, recording: bytes, form: dict[str, Any], status: int, code: str
) -> None:
    got_status, body = await _create(stack, recording, **form)
    assert (got_status, body["error"]) == (status, code), body
    assert " / " in body["detail"], "a person reads this: Korean and English"
    assert not stack.bus.published


async def test_missing_file_and_not_audio(stack: Stack, recording: bytes) -> None:
    response = await stack.client.post(
        "/api/v1/broadcasts", data={"category": "administrative", "all_villages": "true"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "missing_file"
    status, body = await _create(stack, b"this is not audio at all", all_villages="true")
    assert status == 422
    assert body["error"] in ("unsupported_audio", "corrupt_audio")
    listing = (await stack.client.get("/api/v1/broadcasts")).json()
    assert listing["total"] == 0


async def test_authentication_is_required(stack: Stack) -> None:
    response = await stack.client.get("/api/v1/broadcasts", headers={"Authorization": "Bearer no"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    response = await stack.client.get("/api/v1/broadcasts", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


async def test_unknown_broadcast_is_404(stack: Stack) -> None:
    response = await stack.client.get(f"/api/v1/broadcasts/{'0' * 32}")
    assert response.status_code == 404
    assert response.json()["error"] == "broadcast_not_found"


async def test_audio_is_served_by_hash(stack: Stack, recording: bytes) -> None:
    await _everyone_online(stack)
    await _create(stack, recording, all_villages="true")
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    ref = command.audio[0]
    response = await stack.client.get(f"/api/v1/audio/{ref.sha256}")
    assert response.status_code == 200
    assert response.content == ref.inline_bytes()
    assert response.headers["content-type"].startswith("audio/ogg")


async def test_a_publisher_that_dies_after_publishing_is_finished_by_another(
    stack: Stack, recording: bytes
) -> None:
    """The outbox row outlives its lease: another publisher re-publishes the same command id."""
    from gateway.broadcasts.publisher import Publisher

    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true")
    doomed = Publisher(
        stack.app.state.sessions, stack.bus, stack.settings, stack.clock, owner="doomed"
    )
    claimed = await doomed._claim(stack.clock.now())
    assert len(claimed) == 1
    # It publishes, then "dies" before recording anything.
    await doomed._publish(claimed[0])
    assert await stack.publish_pending() == 0, "the lease keeps others away while it lasts"

    stack.clock.advance(stack.settings.publish_lease_s + 1)
    assert await stack.publish_pending() == 1
    (_, first), (_, second) = _commands(stack)
    assert first.id == second.id, "the same command: speakers play it once"
    for code in codes:
        _ack(stack, second, code, AckStatus.PLAYED)
    await stack.deliver()
    detail = await _detail(stack, body["id"])
    assert detail["speakers"]["played"] == len(codes)


async def test_progress_stream_ends_when_nothing_can_change(stack: Stack, recording: bytes) -> None:
    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true")
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    for code in codes:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()
    response = await stack.client.get(f"/api/v1/broadcasts/{body['id']}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert events, response.text

    last = json.loads(events[-1])
    assert last["state"] == "completed"
    assert last["speakers"]["played"] == len(codes)


async def _verifier(stack: Stack) -> contract.SignatureCheck:
    keys = (await stack.client.get("/api/v1/keys", headers={"Authorization": ""})).json()
    return contract.SignatureCheck({k["key_id"]: base64.b64decode(k["public_key"]) for k in keys})


async def test_commands_are_signed_and_keys_rotate(stack: Stack, recording: bytes) -> None:
    await _everyone_online(stack)
    await _create(stack, recording, all_villages="true")
    await stack.publish_pending()
    [(_, first)] = _commands(stack)
    identity = contract.SpeakerIdentity(city=first.city, district="d01", village="v", speaker="s")
    at = first.issued_at_ms
    assert first.sig
    assert first.key_id
    assert contract.check_command(first, identity, at_ms=at, verify=await _verifier(stack)) is None
    forged = first.model_copy(update={"category": contract.Category.DISASTER})
    assert (
        contract.check_command(forged, identity, at_ms=at, verify=await _verifier(stack))
        is contract.RejectReason.BAD_SIGNATURE
    )

    rotated = await stack.client.post("/api/v1/keys/rotate")
    assert rotated.status_code == 201
    new_key = rotated.json()["key_id"]
    await _create(stack, recording, all_villages="true", title="두 번째")
    await stack.publish_pending()
    second = _commands(stack)[-1][1]
    assert second.key_id == new_key != first.key_id
    verify = await _verifier(stack)
    assert contract.check_command(first, identity, at_ms=at, verify=verify) is None
    assert contract.check_command(second, identity, at_ms=at, verify=verify) is None
    keys = (await stack.client.get("/api/v1/keys")).json()
    assert [k["active"] for k in keys] == [False, True]
    assert all("private" not in k for k in keys)

    # A speaker configured with the first key only learns the rotated one from the keyring:
    # each key there is signed by the one before it.
    ring_response = await stack.client.get("/api/v1/keys/ring", headers={"Authorization": ""})
    assert ring_response.status_code == 200, "public: a speaker asks without a token"
    ring = contract.decode_keyring(ring_response.content)
    first_key = next(k for k in ring.keys if k.key_id == first.key_id)
    speaker = contract.SignatureCheck({first.key_id: first_key.raw_public_key()})
    assert contract.check_command(second, identity, at_ms=at, verify=speaker) is not None
    assert set(speaker.learn(ring, first.city)) == {new_key}
    assert contract.check_command(second, identity, at_ms=at, verify=speaker) is None
    elsewhere = contract.SignatureCheck({first.key_id: first_key.raw_public_key()})
    assert elsewhere.learn(ring, "another-city") == {}, "a keyring names its city"


async def test_cancel_stops_everything_once_and_keeps_what_played(
    stack: Stack, recording: bytes
) -> None:
    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true")
    await stack.publish_pending()
    [(_, play)] = _commands(stack)
    done, playing, *rest = codes
    _ack(stack, play, done, AckStatus.PLAYED)
    _ack(stack, play, playing, AckStatus.PLAYING)
    await stack.deliver()

    response = await stack.client.post(f"/api/v1/broadcasts/{body['id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "cancelled"
    again = await stack.client.post(f"/api/v1/broadcasts/{body['id']}/cancel")
    assert again.status_code == 200, "cancelling twice is harmless"

    await stack.publish_pending()
    topic, cancel = _commands(stack)[-1]
    assert topic == contract.command_topic_all(stack.settings.city_code)
    assert cancel.type == "cancel"
    assert cancel.broadcast_id == play.broadcast_id
    assert cancel.id != play.id
    assert cancel.sig
    assert len(_commands(stack)) == 2, "one cancel for the one group publish, nothing more"

    _ack(stack, cancel, playing, AckStatus.RECEIVED)
    _ack(stack, play, playing, AckStatus.FAILED, reason="cancelled")
    await stack.deliver()
    assert stack.app.state.intake.counts["cancel_acks"] == 1
    detail = await _detail(stack, body["id"])
    states = {s["code"]: s["state"] for s in _speakers(detail)}
    assert states[done] == "played"
    assert states[playing] == "cancelled"
    assert all(states[c] == "cancelled" for c in rest)
    assert detail["state"] == "cancelled"


async def test_a_finished_broadcast_cannot_be_cancelled(stack: Stack, recording: bytes) -> None:
    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true")
    await stack.publish_pending()
    [(_, play)] = _commands(stack)
    for code in codes:
        _ack(stack, play, code, AckStatus.PLAYED)
    await stack.deliver()
    await stack.app.state.sweeper.sweep_once()
    response = await stack.client.post(f"/api/v1/broadcasts/{body['id']}/cancel")
    assert response.status_code == 409
    assert response.json()["error"] == "broadcast_finished"


async def test_a_broadcast_still_playing_can_be_cancelled_after_it_expired(
    stack: Stack, recording: bytes
) -> None:
    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true", expires_in_s="30")
    await stack.publish_pending()
    [(_, play)] = _commands(stack)
    playing, *rest = codes
    _ack(stack, play, playing, AckStatus.PLAYING)
    for code in rest:
        _ack(stack, play, code, AckStatus.PLAYED)
    await stack.deliver()
    stack.clock.advance(40)
    await stack.app.state.sweeper.sweep_once()
    assert (await _detail(stack, body["id"]))["state"] == "in_progress"

    response = await stack.client.post(f"/api/v1/broadcasts/{body['id']}/cancel")
    assert response.status_code == 200, response.text
    await stack.publish_pending()
    _, cancel = _commands(stack)[-1]
    assert cancel.type == "cancel"
    assert cancel.expires_at_ms > to_ms(stack.clock.now()) > play.expires_at_ms
    detail = await _detail(stack, body["id"])
    assert {s["code"]: s["state"] for s in _speakers(detail)}[playing] == "cancelled"


async def test_typed_text_is_spoken_and_travels_with_the_command(stack: Stack) -> None:
    await _everyone_online(stack)
    text = "내일 오전 7시에 마을 회관 앞에서 15명이 모여 대청소를 합니다."
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "village_notice", "all_villages": "true", "text": text},
    )
    assert response.status_code == 201, response.text
    assert response.json()["duration_ms"] > 2000
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    assert command.text == text, "the text itself travels for displays and the residents' page"
    assert command.audio[0].codec == "opus"


@pytest.mark.parametrize(
    ("text", "code"),
    [("   ", "empty_text"), ("!!! ### ~~~", "unspeakable_text"), ("가" * 2001, "text_too_long")],
)
async def test_bad_text_is_refused(stack: Stack, text: str, code: str) -> None:
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "village_notice", "all_villages": "true", "text": text},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code


async def test_a_lost_played_ack_is_asked_for_again(stack: Stack, recording: bytes) -> None:
    codes = await _everyone_online(stack)
    _, body = await _create(stack, recording, all_villages="true")
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    quiet, *rest = codes
    _ack(stack, command, quiet, AckStatus.RECEIVED)
    for code in rest:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()

    stack.clock.advance(120)  # well past the message's length: "played" never came
    for code in codes:
        _presence(stack, code, "heartbeat")
    await stack.deliver()
    await stack.app.state.sweeper.sweep_once()
    await stack.publish_pending()
    assert len(_commands(stack)) == 1, "asked again only after the retry back-off"
    stack.clock.advance(stack.settings.retry_backoff_s)
    await stack.publish_pending()
    topic, again = _commands(stack)[-1]
    assert topic == contract.command_topic_speaker(stack.settings.city_code, quiet)
    assert again.id == command.id, "asked with the same id: the speaker answers, never replays"
    _ack(stack, again, quiet, AckStatus.PLAYED)
    await stack.deliver()
    detail = await _detail(stack, body["id"])
    assert detail["speakers"]["played"] == len(codes)


async def test_a_play_command_says_when_every_speaker_starts(
    stack: Stack, recording: bytes
) -> None:
    await _everyone_online(stack)
    status, body = await _create(stack, recording, all_villages="true")
    assert status == 201, body
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    assert command.play_at_ms == command.issued_at_ms + stack.settings.play_lead_ms


async def test_speaker_clocks_are_shown_and_an_off_one_is_flagged(stack: Stack) -> None:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 2})).json()["items"]
    in_step, off = fleet[0]["code"], fleet[1]["code"]
    for code, offset in ((in_step, 4), (off, -180)):
        message = contract.Presence(
            speaker=code, status="heartbeat", at_ms=contract.now_ms(), clock_offset_ms=offset
        )
        topic = contract.presence_topic(stack.settings.city_code, code)
        stack.bus.incoming.put_nowait(Incoming(topic, contract.encode_presence(message)))
    await stack.deliver()
    items = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    clocks = {s["code"]: (s["clock_offset_ms"], s["clock_off"]) for s in items}
    assert clocks[in_step] == (4, False)
    assert clocks[off] == (-180, True)
    assert {clocks[s["code"]] for s in items if s["code"] not in (in_step, off)} == {(None, False)}
