"""Indoor receivers' 들었어요: a receiver that played a notice and sends a signed ``heard`` counts
its household as confirmed in the broadcast's record; a heard that is forged (another key),
early (before it played), from a loudspeaker or for a command never delivered is dropped with its
reason counted."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.bus import Incoming
from tests.flow.conftest import Stack, proof_of
from tests.flow.test_broadcast_flow import _commands, _create, _detail, _presence, recording
from wire import contract
from wire.contract import AckStatus

__all__ = ["recording"]

API = "/api/v1"
ON_SQLITE = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)


def _send(stack: Stack, ack: contract.Ack) -> None:
    topic = contract.ack_topic(stack.settings.city_code, ack.speaker)
    stack.bus.incoming.put_nowait(Incoming(topic, contract.encode_ack(ack)))


def _played(command: contract.Command, code: str, key: bytes) -> contract.Ack:
    ack = contract.Ack(
        command_id=command.id,
        broadcast_id=command.broadcast_id,
        speaker=code,
        status=AckStatus.PLAYED,
        at_ms=contract.now_ms(),
        **proof_of(command),
    )
    receipt = contract.receipt_of(ack)
    assert receipt is not None
    return ack.model_copy(update={"receipt_sig": contract.sign_receipt(receipt, key).sig})


def _heard(command_id: str, broadcast_id: str, code: str, key: bytes) -> contract.Ack:
    ack = contract.Ack(
        command_id=command_id,
        broadcast_id=broadcast_id,
        speaker=code,
        status=AckStatus.HEARD,
        at_ms=contract.now_ms(),
    )
    return contract.sign_heard(ack, key)


async def _receiver(stack: Stack, village_id: int, code: str, address: str) -> bytes:
    client = stack.client
    speaker = await client.post(
        f"{API}/speakers",
        json={"code": code, "village_id": village_id, "kind": "household_receiver"},
    )
    assert speaker.status_code == 201, speaker.text
    household = await client.post(
        f"{API}/villages/{village_id}/households",
        json={"address": address, "receiver_id": speaker.json()["id"], "receiver_volume": 60},
    )
    assert household.status_code == 201, household.text
    key = contract.new_receipt_key()[0]
    enrollment = contract.receipt_key_enrollment(key, stack.settings.city_code, code)
    enrolled = await client.put(f"{API}/speakers/receipt-keys", json={"keys": {code: enrollment}})
    assert enrolled.status_code == 200, enrolled.text
    _presence(stack, code, "online")
    return key


def _village(detail: dict[str, Any], village_id: int) -> dict[str, Any]:
    [village] = [v for v in detail["village_deliveries"] if v["village_id"] == village_id]
    return village


@ON_SQLITE
async def test_a_household_confirms_and_forged_heards_are_dropped(
    stack: Stack, recording: bytes
) -> None:
    fleet = (await stack.client.get(f"{API}/speakers", params={"limit": 1000})).json()["items"]
    village_id = fleet[0]["village_id"]
    loudspeaker = fleet[0]["code"]
    mine = await _receiver(stack, village_id, "home-r1", "상촌리 1")
    theirs = await _receiver(stack, village_id, "home-r2", "상촌리 2")
    await stack.deliver()

    status, body = await _create(stack, recording, village_ids=[village_id], text="주민 회의")
    assert status == 201, body
    await stack.publish_pending()
    command = _commands(stack)[-1][1]
    ids = (command.id, command.broadcast_id)

    # Before it played: dropped.
    _send(stack, _heard(*ids, "home-r2", theirs))
    await stack.deliver()
    _send(stack, _played(command, "home-r1", mine))
    _send(stack, _played(command, "home-r2", theirs))
    await stack.deliver()
    # Signed with another receiver's key; from a loudspeaker; for a command never delivered.
    _send(stack, _heard(*ids, "home-r2", mine))
    _send(stack, _heard(*ids, loudspeaker, mine))
    _send(stack, _heard(contract.new_id(), command.broadcast_id, "home-r2", theirs))
    await stack.deliver()
    assert _village(await _detail(stack, body["id"]), village_id)["households_confirmed"] == 0

    # The household's own receiver, twice (the button pressed again): one household.
    _send(stack, _heard(*ids, "home-r1", mine))
    await stack.deliver()
    _send(stack, _heard(*ids, "home-r1", mine))
    await stack.deliver()
    assert _village(await _detail(stack, body["id"]), village_id)["households_confirmed"] == 1

    counts = stack.app.state.intake.counts
    assert counts["heard"] == 1
    assert {k: v for k, v in counts.items() if k.startswith("heard_refused_")} == {
        "heard_refused_not_played": 1,
        "heard_refused_bad_signature": 1,
        "heard_refused_not_receiver": 1,
        "heard_refused_not_delivered": 1,
    }
    metrics = (await stack.client.get("/metrics")).text
    assert "heard_refused_bad_signature" in metrics
