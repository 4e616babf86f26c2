"""An indoor receiver's household settings: staff set its volume and quiet-hours hold through the
households API (a bad volume is a 422 with its own code), the receiver learns them, with its
district's quiet hours, in its provisioning document (asking with its broker password as the
device agent does); and a notice it holds for its household is
neither asked again, nor counted missed on the board, nor sent to the village's phones."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devices.receiver_settings import SettingsUnavailable, fetch_receiver_settings
from tests.fallback.conftest import add_resident, fallback_messages
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _ack, _commands, _create, _detail, _presence, recording
from wire import contract
from wire.contract import AckStatus

__all__ = ["recording"]

API = "/api/v1"
ON_SQLITE = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    """A gateway that sends SMS: the test reads its outbox, the address is never called."""
    return {"sms_sendsms_url": "http://127.0.0.1:9/cgi-bin/sendsms", "sms_sender": "1588"}


async def _household_with_receiver(
    stack: Stack, village_id: int, code: str, **settings: Any
) -> int:
    speaker = await stack.client.post(
        f"{API}/speakers",
        json={"code": code, "village_id": village_id, "kind": "household_receiver"},
    )
    assert speaker.status_code == 201, speaker.text
    household = await stack.client.post(
        f"{API}/villages/{village_id}/households",
        json={"address": f"{code} 1", "receiver_id": speaker.json()["id"], **settings},
    )
    assert household.status_code == 201, household.text
    household_id: int = household.json()["id"]
    return household_id


async def _receiver_block(stack: Stack, code: str) -> dict[str, Any] | None:
    response = await stack.client.get(f"{API}/devices/{code}/provisioning")
    assert response.status_code == 200, response.text
    block: dict[str, Any] | None = response.json().get("receiver")
    return block


@ON_SQLITE
async def test_staff_set_a_receivers_volume_and_hold_and_it_learns_them_when_provisioned(
    stack: Stack,
) -> None:
    client = stack.client
    fleet = (await client.get(f"{API}/speakers", params={"limit": 1000})).json()["items"]
    loudspeaker = fleet[0]
    village_id, district_id = loudspeaker["village_id"], loudspeaker["district_id"]
    hid = await _household_with_receiver(stack, village_id, "home-r1", receiver_volume=40)

    for wrong in (101, -1, "loud", 55.5):
        refused = await client.patch(f"{API}/households/{hid}", json={"receiver_volume": wrong})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "invalid_volume"
        assert "0부터 100까지" in refused.json()["detail"]
        assert "0 to 100" in refused.json()["detail"]
    held = await client.patch(f"{API}/households/{hid}", json={"hold_non_urgent": True})
    assert held.status_code == 200, held.text
    assert (held.json()["receiver_volume"], held.json()["hold_non_urgent"]) == (40, True)

    # The city's quiet hours, then the district's own, then none.
    night = {"start": "21:00", "end": "07:00", "timezone": "Asia/Seoul"}
    assert await _receiver_block(stack, "home-r1") == {
        "volume": 40,
        "hold_quiet": True,
        "quiet_hours": night,
    }
    own = await client.put(
        f"{API}/quiet-hours/districts/{district_id}", json={"window": "22:30-05:00"}
    )
    assert own.status_code == 200, own.text
    block = await _receiver_block(stack, "home-r1")
    assert block is not None
    assert block["quiet_hours"] == {**night, "start": "22:30", "end": "05:00"}
    await client.put(f"{API}/quiet-hours/districts/{district_id}", json={"window": "off"})
    louder = await client.patch(f"{API}/households/{hid}", json={"receiver_volume": 100})
    assert louder.status_code == 200, louder.text
    block = await _receiver_block(stack, "home-r1")
    assert block is not None
    assert (block["volume"], block["hold_quiet"], block.get("quiet_hours")) == (100, True, None)
    # A loudspeaker has no household to ask.
    assert await _receiver_block(stack, loudspeaker["code"]) is None

    # The receiver itself asks with its broker password, as the device agent does.
    speaker_id = next(
        s["id"]
        for s in (await client.get(f"{API}/speakers", params={"limit": 1000})).json()["items"]
        if s["code"] == "home-r1"
    )
    issued = await client.post(f"{API}/speakers/{speaker_id}/credentials")
    assert issued.status_code == 201, issued.text
    password = issued.json()["password"]
    own = httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.app))
    async with own:
        learned = await fetch_receiver_settings(own, "http://gateway", "home-r1", password)
        assert learned == contract.ReceiverSettings(volume=100, hold_quiet=True)
        with pytest.raises(SettingsUnavailable):
            await fetch_receiver_settings(own, "http://gateway", "home-r1", password + "x")


async def _loudspeakers_play_and_the_receiver_says(
    stack: Stack,
    recording: bytes,
    receiver: str,
    status: AckStatus,
    reason: str,
    **settings: Any,
) -> tuple[int, dict[str, Any]]:
    """A village with a resident and a household's receiver (``settings``): a notice to it that
    every loudspeaker played and the receiver answered ``status``/``reason``."""
    client = stack.client
    fleet = (await client.get(f"{API}/speakers", params={"limit": 1000})).json()["items"]
    village_id = fleet[0]["village_id"]
    loudspeakers = [s["code"] for s in fleet if s["village_id"] == village_id]
    await _household_with_receiver(stack, village_id, receiver, **settings)
    for code in [*loudspeakers, receiver]:
        _presence(stack, code, "online")
    await stack.deliver()
    await add_resident(client, village_id, "010-2000-0001", stack.clock.now().isoformat())

    answer, body = await _create(stack, recording, village_ids=[village_id], text="주민 회의")
    assert answer == 201, body
    await stack.publish_pending()
    command = _commands(stack)[-1][1]
    for code in loudspeakers:
        _ack(stack, command, code, AckStatus.PLAYED)
    _ack(stack, command, receiver, status, reason=reason)
    await stack.deliver()
    return village_id, body


@ON_SQLITE
async def test_a_notice_a_receiver_holds_is_not_asked_again_missed_or_sent_by_sms(
    stack: Stack, recording: bytes
) -> None:
    village_id, body = await _loudspeakers_play_and_the_receiver_says(
        stack, recording, "home-r1", AckStatus.RECEIVED, "held_quiet_hours", hold_non_urgent=True
    )

    def village(detail: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        [row] = [v for v in detail["village_deliveries"] if v["village_id"] == village_id]
        [receiver] = [s for s in row["speakers"] if s["code"] == "home-r1"]
        return row["outcome"], receiver

    detail = await _detail(stack, body["id"])
    outcome, receiver = village(detail)
    assert (receiver["state"], receiver["reason"]) == ("received", "held_quiet_hours")
    assert outcome == "played"
    assert (detail["speakers"]["held"], detail["speakers"]["received"]) == (1, 0)
    assert detail["state"] == "in_progress"  # the receiver will still play it

    # Past the ack timeout and the fallback rule's ten minutes: nobody asks the receiver again,
    # and the village's residents are not told by phone for a notice a household holds.
    published = len(stack.bus.published)
    stack.clock.advance(601)
    await stack.app.state.sweeper.sweep_once()
    await stack.publish_pending()
    await stack.app.state.fallback_worker.run_once()
    await stack.app.state.fallback_worker.run_once()
    assert len(stack.bus.published) == published
    assert await fallback_messages(stack.app.state.sessions) == []
    detail = await _detail(stack, body["id"])
    [row] = [v for v in detail["village_deliveries"] if v["village_id"] == village_id]
    assert (row["fallback"]["state"], row["fallback"]["reason"]) == ("not_needed", "played")

    # Quiet hours outlast the notice: it expired held, still not a missed one.
    stack.clock.advance(3600)
    await stack.app.state.sweeper.sweep_once()
    detail = await _detail(stack, body["id"])
    outcome, receiver = village(detail)
    assert (receiver["state"], receiver["reason"]) == ("expired", "held_quiet_hours")
    assert outcome == "played"
    assert (detail["speakers"]["held"], detail["speakers"]["expired"]) == (1, 0)
    assert detail["state"] == "completed"
    to_receiver = contract.command_topic_speaker(stack.settings.city_code, "home-r1")
    assert [topic for topic, _ in _commands(stack) if topic == to_receiver] == []


@ON_SQLITE
async def test_a_receiver_its_household_muted_is_no_miss(stack: Stack, recording: bytes) -> None:
    village_id, body = await _loudspeakers_play_and_the_receiver_says(
        stack, recording, "home-m1", AckStatus.FAILED, "muted", receiver_volume=0
    )

    detail = await _detail(stack, body["id"])
    [row] = [v for v in detail["village_deliveries"] if v["village_id"] == village_id]
    assert row["outcome"] == "played"
    assert (detail["speakers"]["held"], detail["speakers"].get("failed", 0)) == (1, 0)
    await stack.app.state.sweeper.sweep_once()
    assert (await _detail(stack, body["id"]))["state"] == "completed"
