"""Proof of play: played acks are checked (audio hash, length, signed receipt), bad ones fail
with bad_proof and a security event, and a broadcast's receipts verify again offline."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.bus import Incoming
from maeul.cli import app as cli
from tests.flow.conftest import Stack, proof_of
from tests.media import make_recording
from tests.unit.test_receipts import WEAK_KEYS
from wire import contract
from wire.contract import AckStatus


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "notice.m4a", "m4a", seconds=3.0)
    return path.read_bytes()


async def _broadcast(stack: Stack, recording: bytes) -> tuple[list[str], contract.Command]:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    codes = [s["code"] for s in fleet]
    for code in codes:
        _put(stack, contract.presence_topic(stack.settings.city_code, code),
             contract.encode_presence(contract.Presence(
                 speaker=code, status="online", at_ms=contract.now_ms())))  # fmt: skip
    await stack.deliver()
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true"},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
    )
    assert response.status_code == 201, response.text
    await stack.publish_pending()
    [(_, payload, _, _)] = stack.bus.published
    return codes, contract.decode_command(payload)


def _put(stack: Stack, topic: str, payload: bytes) -> None:
    stack.bus.incoming.put_nowait(Incoming(topic, payload))


def _played(
    stack: Stack,
    command: contract.Command,
    speaker: str,
    *,
    key: bytes | None = None,
    **proof: Any,
) -> contract.Ack:
    ack = contract.Ack(
        command_id=command.id,
        broadcast_id=command.broadcast_id,
        speaker=speaker,
        status=AckStatus.PLAYED,
        at_ms=contract.now_ms(),
        **{**proof_of(command), "level_dbfs": -21.37, **proof},
    )
    if key is not None:
        receipt = contract.receipt_of(ack)
        assert receipt is not None
        ack = ack.model_copy(update={"receipt_sig": contract.sign_receipt(receipt, key).sig})
    _put(stack, contract.ack_topic(stack.settings.city_code, speaker), contract.encode_ack(ack))
    return ack


async def _speakers(stack: Stack, broadcast_id: str) -> dict[str, dict[str, Any]]:
    detail = (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")).json()
    return {s["code"]: s for v in detail["village_deliveries"] for s in v["speakers"]}


async def _bad_proof_events(stack: Stack) -> list[dict[str, Any]]:
    body = (await stack.client.get("/api/v1/security-events", params={"kind": "bad_ack"})).json()
    return [e for e in body["items"] if e["reason"] == "bad_proof"]


async def _enroll(stack: Stack, codes: list[str]) -> dict[str, bytes]:
    keys = {code: contract.new_receipt_key()[0] for code in codes}
    city = stack.settings.city_code
    public = {code: contract.receipt_key_enrollment(key, city, code) for code, key in keys.items()}
    response = await stack.client.put("/api/v1/speakers/receipt-keys", json={"keys": public})
    assert response.status_code == 200, response.text
    assert response.json() == {"enrolled": len(codes)}
    return keys


async def test_a_played_ack_with_a_zero_hash_and_one_ms_fails_as_bad_proof(
    stack: Stack, recording: bytes
) -> None:
    codes, command = await _broadcast(stack, recording)
    liar, honest = codes[0], codes[1]
    _played(stack, command, liar, audio_sha256="0" * 64, played_ms=1)
    _played(stack, command, honest)
    await stack.deliver()

    speakers = await _speakers(stack, command.broadcast_id)
    assert (speakers[liar]["state"], speakers[liar]["reason"]) == ("failed", "bad_proof")
    assert speakers[liar]["proof"] is None
    assert speakers[honest]["state"] == "played"
    assert speakers[honest]["proof"] == {
        "audio_sha256": command.audio[0].sha256,
        "played_ms": command.audio[0].duration_ms,
        "level_dbfs": -21.37,
        "at": speakers[honest]["proof"]["at"],
        "verified": None,  # no receipt key enrolled: nothing to verify, the hash and length hold
    }
    [event] = await _bad_proof_events(stack)
    assert event["speaker_code"] == liar
    assert event["command_id"] == command.id
    assert event["details"]["problem"] == "unknown_audio"
    assert event["details"]["played_ms"] == 1


async def test_the_right_hash_played_for_a_moment_is_no_proof(
    stack: Stack, recording: bytes
) -> None:
    codes, command = await _broadcast(stack, recording)
    duration = command.audio[0].duration_ms
    _played(stack, command, codes[0], played_ms=duration // 3)  # stopped a third of the way
    _played(stack, command, codes[1], played_ms=duration + 400)  # within the tolerance
    await stack.deliver()

    speakers = await _speakers(stack, command.broadcast_id)
    assert (speakers[codes[0]]["state"], speakers[codes[0]]["reason"]) == ("failed", "bad_proof")
    assert speakers[codes[1]]["state"] == "played"
    [event] = await _bad_proof_events(stack)
    assert event["details"]["problem"] == "wrong_length"


async def test_a_played_ack_of_silence_or_with_no_level_is_no_proof(
    stack: Stack, recording: bytes
) -> None:
    codes, command = await _broadcast(stack, recording)
    assert command.audible
    keys = await _enroll(stack, codes[:3])
    _played(stack, command, codes[0], key=keys[codes[0]], level_dbfs=-200.0)  # digital silence
    _played(stack, command, codes[1], key=keys[codes[1]], level_dbfs=None)  # says nothing
    _played(stack, command, codes[2], key=keys[codes[2]], level_dbfs=-17.2)
    await stack.deliver()

    speakers = await _speakers(stack, command.broadcast_id)
    for code in codes[:2]:
        assert (speakers[code]["state"], speakers[code]["reason"]) == ("failed", "bad_proof")
        assert speakers[code]["proof"] is None
    assert speakers[codes[2]]["proof"]["verified"] is True
    events = {e["speaker_code"]: e["details"]["problem"] for e in await _bad_proof_events(stack)}
    assert events == {codes[0]: "silent", codes[1]: "silent"}


async def test_an_enrolled_speaker_s_receipt_must_verify(stack: Stack, recording: bytes) -> None:
    codes, command = await _broadcast(stack, recording)
    signer, forger, unsigned = codes[0], codes[1], codes[2]
    keys = await _enroll(stack, [signer, forger, unsigned])
    _played(stack, command, signer, key=keys[signer])
    _played(stack, command, forger, key=contract.new_receipt_key()[0])  # not its enrolled key
    _played(stack, command, unsigned)
    await stack.deliver()

    speakers = await _speakers(stack, command.broadcast_id)
    assert speakers[signer]["state"] == "played"
    assert speakers[signer]["proof"]["verified"] is True
    for code in (forger, unsigned):
        assert (speakers[code]["state"], speakers[code]["reason"]) == ("failed", "bad_proof")
    events = {e["speaker_code"]: e["details"]["problem"] for e in await _bad_proof_events(stack)}
    assert events == {forger: "bad_receipt", unsigned: "no_receipt"}


async def test_receipt_keys_are_checked_at_enrollment(stack: Stack, recording: bytes) -> None:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1})).json()["items"]
    speaker = fleet[0]
    url = f"/api/v1/speakers/{speaker['id']}/receipt-key"
    city, code = stack.settings.city_code, speaker["code"]
    private = contract.new_receipt_key()[0]
    enrollment = contract.receipt_key_enrollment(private, city, code)
    response = await stack.client.put(url, json=enrollment)
    assert response.status_code == 200, response.text
    assert response.json()["code"] == code
    assert response.json()["public_key"] == enrollment["public_key"]
    response = await stack.client.put(url, json={**enrollment, "public_key": "not a key"})
    assert response.status_code == 422
    # A small-order point (all zeros among them) would let anyone forge the speaker's receipts.
    forged_proof = base64.b64encode(bytes([1]) + bytes(63)).decode()  # R identity, S = 0
    for weak in WEAK_KEYS:
        body = {"public_key": base64.b64encode(weak).decode(), "proof": forged_proof}
        response = await stack.client.put(url, json=body)
        assert (response.status_code, response.json()["error"]) == (422, "invalid_receipt_key")
        response = await stack.client.put(
            "/api/v1/speakers/receipt-keys", json={"keys": {code: body}}
        )
        assert (response.status_code, response.json()["error"]) == (422, "invalid_receipt_key")
    # Proof of possession: a copied public key (no private half), one proven for another
    # speaker or another city, or no proof at all, is not enrolled.
    other = contract.receipt_key_enrollment(contract.new_receipt_key()[0], city, code)
    for body in (
        {**enrollment, "proof": other["proof"]},
        contract.receipt_key_enrollment(private, city, "another-speaker"),
        contract.receipt_key_enrollment(private, "othercity", code),
    ):
        response = await stack.client.put(url, json=body)
        assert (response.status_code, response.json()["error"]) == (
            422,
            "invalid_receipt_key_proof",
        )
        response = await stack.client.put(
            "/api/v1/speakers/receipt-keys", json={"keys": {code: body}}
        )
        assert (response.status_code, response.json()["error"]) == (
            422,
            "invalid_receipt_key_proof",
        )
    response = await stack.client.put(url, json={"public_key": enrollment["public_key"]})
    assert response.status_code == 422
    response = await stack.client.put(
        "/api/v1/speakers/receipt-keys",
        json={
            "keys": {
                "no-such-speaker": contract.receipt_key_enrollment(private, city, "no-such-speaker")
            }
        },
    )
    assert (response.status_code, response.json()["error"]) == (404, "speaker_not_found")


async def test_an_export_verifies_offline_and_a_tampered_one_does_not(
    stack: Stack, recording: bytes, tmp_path: Path
) -> None:
    codes, command = await _broadcast(stack, recording)
    keys = await _enroll(stack, codes)
    for code in codes:
        _played(stack, command, code, key=keys[code])
    await stack.deliver()

    response = await stack.client.get(f"/api/v1/broadcasts/{command.broadcast_id}/proof")
    assert response.status_code == 200, response.text
    export = response.json()
    assert {e["sha256"] for e in export["encodings"]} == {a.sha256 for a in command.audio}
    assert all(s["receipt"]["sig"] and s["public_key"] for s in export["speakers"])
    assert export["key_id"]
    assert export["sig"]
    good = tmp_path / "proof.json"
    good.write_text(json.dumps(export))
    ring = tmp_path / "ring.json"
    ring.write_text((await stack.client.get("/api/v1/keys/ring")).text)

    runner = CliRunner()
    result = runner.invoke(cli, ["proof", "verify", "--file", str(good), "--keys", str(ring)])
    assert result.exit_code == 0, result.output
    assert f"정상\t게이트웨이 서명\t키 {export['key_id']}" in result.output
    assert result.output.count("정상\t") == len(codes) + 1

    # What an outsider changed in the file, each time re-signing what it could re-sign.
    intruder_key = contract.new_receipt_key()[0]
    first = export["speakers"][0]

    def swapped_key(body: dict[str, Any]) -> None:
        speaker = body["speakers"][0]
        speaker["public_key"] = base64.b64encode(contract.receipt_public_key(intruder_key)).decode()
        receipt = contract.Receipt.model_validate({**speaker["receipt"], "sig": None})
        speaker["receipt"]["sig"] = contract.sign_receipt(receipt, intruder_key).sig

    def made_up_encoding(body: dict[str, Any]) -> None:
        body["encodings"].append({"codec": "opus", "sha256": "f" * 64, "duration_ms": 1000})

    edits = {
        "longer play": lambda b: b["speakers"][0]["receipt"].update(
            played_ms=first["receipt"]["played_ms"] + 1
        ),
        "swapped key": swapped_key,
        "made-up encoding": made_up_encoding,
        "deleted speakers": lambda b: b.update(speakers=b["speakers"][:1]),
        "played shown failed": lambda b: b["speakers"][0].update(state="failed", receipt=None),
        "no signature": lambda b: b.update(sig=None),
        "another key": lambda b: b.update(key_id="intruder"),
    }
    for name, edit in edits.items():
        body = json.loads(json.dumps(export))
        edit(body)
        tampered = tmp_path / "tampered.json"
        tampered.write_text(json.dumps(body))
        args = ["proof", "verify", "--file", str(tampered), "--keys", str(ring)]
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, (name, result.output)
        assert "실패\t게이트웨이 서명\t" in result.output, (name, result.output)

    # A ring whose chain does not hold proves nothing either.
    broken = json.loads(ring.read_text())
    broken["keys"][0]["public_key"] = base64.b64encode(contract.new_receipt_key()[1]).decode()
    ring.write_text(json.dumps(broken))
    result = runner.invoke(cli, ["proof", "verify", "--file", str(good), "--keys", str(ring)])
    assert result.exit_code == 1, result.output


async def test_an_export_stays_verifiable_after_a_key_rotation(
    stack: Stack, recording: bytes, tmp_path: Path
) -> None:
    codes, command = await _broadcast(stack, recording)
    keys = await _enroll(stack, codes)
    for code in codes:
        _played(stack, command, code, key=keys[code])
    await stack.deliver()
    before = tmp_path / "before.json"
    before.write_text(
        (await stack.client.get(f"/api/v1/broadcasts/{command.broadcast_id}/proof")).text
    )
    assert (await stack.client.post("/api/v1/keys/rotate")).status_code == 201
    ring = tmp_path / "ring.json"
    ring.write_text((await stack.client.get("/api/v1/keys/ring")).text)
    after = (await stack.client.get(f"/api/v1/broadcasts/{command.broadcast_id}/proof")).json()
    assert after["key_id"] != json.loads(before.read_text())["key_id"]
    result = CliRunner().invoke(
        cli, ["proof", "verify", "--file", str(before), "--keys", str(ring)]
    )
    assert result.exit_code == 0, result.output


async def test_a_refused_proof_is_a_failure_and_no_play_is_counted_apart(
    stack: Stack, recording: bytes, tmp_path: Path
) -> None:
    codes, command = await _broadcast(stack, recording)
    _played(stack, command, codes[0], audio_sha256="0" * 64)  # refused: bad_proof
    await stack.deliver()
    good = tmp_path / "proof.json"
    good.write_text(
        (await stack.client.get(f"/api/v1/broadcasts/{command.broadcast_id}/proof")).text
    )
    ring = tmp_path / "ring.json"
    ring.write_text((await stack.client.get("/api/v1/keys/ring")).text)
    result = CliRunner().invoke(cli, ["proof", "verify", "--file", str(good), "--keys", str(ring)])
    assert result.exit_code == 1, result.output
    assert f"실패\t{codes[0]}\t게이트웨이가 재생 증명을 거부했습니다" in result.output
    assert f"정상 0대, 실패 1대, 재생하지 않아 증명 없음 {len(codes) - 1}대" in result.output
