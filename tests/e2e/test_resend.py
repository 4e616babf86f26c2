"""End to end: a resend reaches only the speakers that missed a broadcast, each playing once."""

from __future__ import annotations

import pytest

from tests.devices.observer import Observer
from tests.e2e.harness import GatewayProcess, wait_online, wait_until_final
from tests.e2e.test_preemption import (
    _broadcast,
    _fleet,
    _village_with_two_speakers,
    clips,
    gateway,
    observer,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
__all__ = ["clips", "gateway", "observer"]


def _states(summary: dict[str, object]) -> dict[str, str]:
    villages = summary["village_deliveries"]
    assert isinstance(villages, list)
    return {s["code"]: s["state"] for v in villages for s in v["speakers"]}


async def test_resend_reaches_only_the_missed(
    gateway: GatewayProcess, mqtt_url: str, observer: Observer, clips: dict[str, bytes]
) -> None:
    async with gateway.client() as client:
        fleet = await _fleet(client, mqtt_url, gateway.url)
        try:
            total = len(fleet.speakers)
            await wait_online(client, total, exactly=True)
            village_id, (present, away) = await _village_with_two_speakers(client)
            await fleet.speaker(away).go_offline()
            await wait_online(client, total - 1, exactly=True)

            created = await _broadcast(
                client, clips["short"], "village_notice", village_id, expires_in_s=30
            )
            first = _states(await wait_until_final(client, created["id"], limit_s=120))
            assert first[present] == "played"
            assert first[away] == "expired"

            assert await fleet.speaker(away).go_online()
            await wait_online(client, total, exactly=True)
            response = await client.post(f"/api/v1/broadcasts/{created['id']}/resend")
            assert response.status_code == 201, response.text
            resent = response.json()
            assert resent["target"]["resend_of"] == created["id"]
            second = _states(await wait_until_final(client, resent["id"], limit_s=120))
            assert second == {away: "played"}, "only the speaker that missed it"

            assert fleet.speaker(present).played == 1, "the one that heard it is left alone"
            assert fleet.speaker(away).played == 1
            assert all(s.played == 0 for s in fleet if s.id not in (present, away))
        finally:
            await fleet.stop()
